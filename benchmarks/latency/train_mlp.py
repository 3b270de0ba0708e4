"""Train a small MLP on Fashion-MNIST and export it to ONNX, as a trained stand-in model.

The latency benchmark states accuracy only for trained models. This script gives it one in a
minute of CPU time when the example classifier is not built yet:

    python benchmarks/latency/train_mlp.py --output benchmarks/latency/results/mlp.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from approxifer_onnx.data import load_dataset


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="ONNX file to write.")
    parser.add_argument("--hidden", type=int, default=256, help="Hidden units.")
    parser.add_argument("--epochs", type=int, default=3, help="Passes over the training set.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights and the batch order.")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    train = load_dataset(None, split="train")
    test = load_dataset(None, split="test")
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, args.hidden), torch.nn.ReLU(), torch.nn.Linear(args.hidden, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = torch.from_numpy(train.inputs)
    labels = torch.from_numpy(train.labels)
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        for batch in np.array_split(rng.permutation(len(inputs)), len(inputs) // 128):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = (model(torch.from_numpy(test.inputs)).argmax(1).numpy() == test.labels).mean()
        print(f"epoch {epoch + 1}: test accuracy {accuracy:.4f}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (inputs[:1],), str(args.output), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)


if __name__ == "__main__":
    main()
