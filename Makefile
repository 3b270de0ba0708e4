# `make demo` and `make test` each set up their own virtual environment from scratch on a fresh
# machine; later runs reuse it and reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
DEMO_MODEL ?= $(firstword $(wildcard examples/fashion_mnist_*.onnx))
DEMO_DATA ?= examples/fashion_mnist_test_2000.npz

.PHONY: demo test install install-dev benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The core install: numpy, onnx, onnxruntime, click, tqdm. No torch.
$(VENV)/.core-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[plot]'
	touch $@

# Everything the tests use. torch 2.14.1 and torchvision 0.29.1 are pinned in the zoo extra.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,zoo,serve,ray,plot]'
	touch $@ $(VENV)/.core-installed

install: $(VENV)/.core-installed
install-dev: $(VENV)/.dev-installed

demo: $(VENV)/.core-installed
	@test -n "$(DEMO_MODEL)" || { echo "no examples/fashion_mnist_*.onnx found"; exit 1; }
	$(BIN)/approxifer-onnx wrap $(DEMO_MODEL) --data $(DEMO_DATA) -k 8 -s 1 \
		--simulate-stragglers 'count=1;delay=hang' --seed 0 \
		--summary-json demo-summary.json

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

benchmark: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/coded_accuracy.py

clean:
	rm -rf $(VENV) .pytest_cache demo-summary.json
