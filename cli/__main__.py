"""Run the command line as `python -m approxifer_onnx_cli`."""

from .main import main

main()
