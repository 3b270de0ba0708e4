"""Model zoo: registry, training, ONNX export, manifests and the cache, on tiny real models."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

import model_zoo  # noqa: E402
from model_zoo import registry  # noqa: E402
from model_zoo.__main__ import main  # noqa: E402
from model_zoo.build import build, cache_root, default_model_path  # noqa: E402
from model_zoo.export import ExportMismatchError, export_onnx  # noqa: E402
from model_zoo.manifest import manifest_path  # noqa: E402
from model_zoo.training import create_model, predict_logits, train  # noqa: E402

pytestmark = pytest.mark.zoo

# timm's smallest ResNet (about 0.37M parameters with 10 classes) keeps each training test to a
# few seconds on one thread.
TINY = registry.ZooEntry(name="tiny-resnet", source="timm", arch="test_resnet")
TINY_PADDED = registry.ZooEntry(name="tiny-resnet-padded", source="timm", arch="test_resnet",
                                pad_to=32)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_registry(monkeypatch):
    """Register the tiny entries in a copy of the registry, restored after the test."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register(TINY)
    registry.register(TINY_PADDED)
    return registry


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file: magic 0, 0, 0x08, ndim, then big-endian dims."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def stripe_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images of class c carry a bright horizontal stripe on rows 2c+4 and 2c+5, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label + 4: 2 * label + 6, 4:24] = 230
    return images, labels


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory) -> Path:
    """An IDX folder laid out like Fashion-MNIST, with 256 training and 128 test images."""
    folder = tmp_path_factory.mktemp("stripes")
    for prefix, count, seed in (("train", 256, 1), ("t10k", 128, 2)):
        images, labels = stripe_images(count, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("APPROXIFER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny_build(idx_folder, **overrides) -> Path:
    options = dict(
        epochs=1, batch_size=64, lr=3e-3, seed=0, threads=1, data_dir=idx_folder,
        augment=False, progress=False,
    )
    options.update(overrides)
    return build("tiny-resnet", "fashion-mnist", **options)


# Registry ------------------------------------------------------------------------------------

def test_list_models_matches_pattern():
    names = model_zoo.list_models()
    assert "resnet18" in names
    assert "regnetx_002" in names
    assert names == sorted(names)
    assert model_zoo.list_models("resnet*") == [n for n in names if n.startswith("resnet")]
    assert model_zoo.list_models("no-such-*") == []


def test_get_entry_returns_typed_entry():
    entry = model_zoo.get_entry("resnet18")
    assert entry.source == "timm"
    assert entry.arch == "resnet18"
    assert entry.input_size == (1, 28, 28)
    with pytest.raises(AttributeError):
        entry.arch = "resnet50"


def test_get_entry_unknown_lists_close_matches():
    with pytest.raises(KeyError, match=r"unknown zoo model 'resnet81'; did you mean 'resnet18'"):
        model_zoo.get_entry("resnet81")


def test_get_entry_unknown_without_matches():
    with pytest.raises(KeyError, match=r"unknown zoo model 'zzzz'; run 'python -m model_zoo list'"):
        model_zoo.get_entry("zzzz")


def test_zoo_entry_rejects_bad_definitions():
    with pytest.raises(ValueError, match=r"source must be 'timm' or 'torchvision', got 'keras'"):
        registry.ZooEntry(name="x", source="keras", arch="x")
    with pytest.raises(ValueError, match=r"pad_to=20 must be at least the image size"):
        registry.ZooEntry(name="x", source="timm", arch="x", pad_to=20)


def test_register_rejects_conflicting_name(tiny_registry):
    assert registry.register(TINY) is TINY
    with pytest.raises(ValueError, match=r"'tiny-resnet' is already registered"):
        registry.register(registry.ZooEntry(name="tiny-resnet", source="timm", arch="resnet18"))


# Models and training -------------------------------------------------------------------------

def test_create_model_never_downloads(monkeypatch):
    def reject_connect(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", reject_connect)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in model_zoo.list_models():
        entry = model_zoo.get_entry(name)
        model = create_model(entry, num_classes=10).eval()
        with torch.inference_mode():
            logits = model(torch.zeros(2, *entry.input_size))
        assert logits.shape == (2, 10), name


def test_padded_entry_pads_inside_the_model():
    torch.manual_seed(0)
    model = create_model(TINY_PADDED, num_classes=10).eval()
    image = torch.rand(1, 1, 28, 28)
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
    with torch.inference_mode():
        np.testing.assert_array_equal(model(image).numpy(), model.network(padded).numpy())


def test_train_is_deterministic_for_a_seed(idx_folder):
    from model_zoo.datasets import load_split

    data = load_split("fashion-mnist", "train", idx_folder)
    first = train(TINY, data, epochs=1, batch_size=64, seed=3, threads=1, progress=False,
                  max_steps=2)
    second = train(TINY, data, epochs=1, batch_size=64, seed=3, threads=1, progress=False,
                   max_steps=2)
    other = train(TINY, data, epochs=1, batch_size=64, seed=4, threads=1, progress=False,
                  max_steps=2)
    assert first.steps == 2
    assert not first.model.training
    for (name, a), (_, b) in zip(first.model.state_dict().items(),
                                 second.model.state_dict().items()):
        assert torch.equal(a, b), name
    weights = [p for p in first.model.state_dict().values() if p.is_floating_point()]
    others = [p for p in other.model.state_dict().values() if p.is_floating_point()]
    assert any(not torch.equal(a, b) for a, b in zip(weights, others))


def test_train_rejects_images_without_channel_axis():
    inputs = np.zeros((8, 28, 28), dtype=np.float32)
    labels = np.zeros(8, dtype=np.int64)
    message = r"trains on images of shape \(N, C, H, W\), got inputs of shape \(8, 28, 28\)"
    with pytest.raises(ValueError, match=message):
        train(TINY, (inputs, labels), epochs=1, batch_size=4, progress=False)


def test_train_rejects_batch_larger_than_data():
    inputs = np.zeros((8, 1, 28, 28), dtype=np.float32)
    labels = np.zeros(8, dtype=np.int64)
    with pytest.raises(ValueError, match=r"batch_size=16 exceeds the 8 training images"):
        train(TINY, (inputs, labels), epochs=1, batch_size=16, progress=False)


def test_train_rejects_labels_out_of_range():
    inputs = np.zeros((8, 1, 28, 28), dtype=np.float32)
    labels = np.arange(8, dtype=np.int64)
    message = r"labels must lie in \[0, num_classes=5\), got values from 0 to 7"
    with pytest.raises(ValueError, match=message):
        train(TINY, (inputs, labels), epochs=1, batch_size=4, num_classes=5, progress=False)


def test_train_max_steps_spans_epochs(idx_folder):
    from model_zoo.datasets import load_split

    data = load_split("fashion-mnist", "train", idx_folder)
    result = train(TINY, data, epochs=3, batch_size=64, threads=1, progress=False, max_steps=6,
                   augment=False)
    assert result.steps == 6
    assert [record["epoch"] for record in result.history] == [1, 2]
    assert result.history[1]["lr_end"] > 0


def test_train_rejects_bad_hyperparameters():
    data = (np.zeros((8, 1, 28, 28), dtype=np.float32), np.zeros(8, dtype=np.int64))
    with pytest.raises(ValueError, match=r"optimizer must be 'adamw' or 'sgd', got 'adam'"):
        train(TINY, data, epochs=1, batch_size=4, optimizer="adam", progress=False)
    with pytest.raises(ValueError, match=r"epochs must be an integer >= 1, got 0"):
        train(TINY, data, epochs=0, batch_size=4, progress=False)


# Export --------------------------------------------------------------------------------------

def test_export_matches_torch_with_dynamic_batch(tmp_path):
    torch.manual_seed(0)
    model = create_model(TINY_PADDED, num_classes=10).eval()
    path = tmp_path / "tiny.onnx"

    check = export_onnx(model, path, (1, 28, 28), rng=1)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    proto = onnx.load(str(path))
    assert check.opset == 17
    assert proto.ir_version == check.ir_version
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    assert check.batch_sizes == (1, 16)

    inputs = np.random.default_rng(5).random((5, 1, 28, 28), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"input": inputs})
    with torch.inference_mode():
        expected = model(torch.from_numpy(inputs)).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-4)
    assert check.max_abs_diff <= 1e-4 + 1e-3 * np.abs(expected).max()


class _ExportOnlyDoubling(torch.nn.Module):
    """Returns x in torch but 2x in the exported graph, a real torch/ONNX disagreement."""

    def forward(self, x):
        flat = x.flatten(1)[:, :10]
        if torch.onnx.is_in_onnx_export():
            return flat * 2
        return flat


def test_export_mismatch_raises_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.onnx"
    inputs = np.full((4, 1, 28, 28), 0.5, dtype=np.float32)
    with pytest.raises(ExportMismatchError, match=r"differ beyond atol=0.0001, rtol=0.001"):
        export_onnx(_ExportOnlyDoubling(), path, (1, 28, 28), check_inputs=inputs)
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_check_inputs_of_wrong_shape(tmp_path):
    model = create_model(TINY, num_classes=10)
    message = r"check_inputs must have shape \(B >= 2, 1, 28, 28\), got \(4, 28, 28\)"
    with pytest.raises(ValueError, match=message):
        export_onnx(model, tmp_path / "m.onnx", (1, 28, 28),
                    check_inputs=np.zeros((4, 28, 28), dtype=np.float32))


# Build, manifest and cache -------------------------------------------------------------------

def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("APPROXIFER_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "approxifer-onnx" / "zoo"
    monkeypatch.setenv("APPROXIFER_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine" / "zoo"
    assert default_model_path("resnet18", "fashion-mnist") == (
        tmp_path / "mine" / "zoo" / "resnet18-fashion-mnist" / "model.onnx"
    )


def test_build_writes_checked_model_and_manifest(tiny_registry, idx_folder, cache_dir):
    path = tiny_build(idx_folder)

    assert path == cache_dir / "zoo" / "tiny-resnet-fashion-mnist" / "model.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.json", "model.onnx"]
    manifest = json.loads(manifest_path(path).read_text())

    # The recorded accuracy is onnxruntime's, on every test image.
    from model_zoo.datasets import load_split

    test = load_split("fashion-mnist", "test", idx_folder)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predictions = session.run(None, {"input": test.inputs})[0].argmax(axis=1)
    assert manifest["test_accuracy"] == pytest.approx(np.mean(predictions == test.labels))
    assert manifest["test_images"] == 128
    assert manifest["train_images"] == 256

    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["size_bytes"] == path.stat().st_size
    assert manifest["architecture"] == "test_resnet"
    assert manifest["source"] == "timm"
    assert manifest["dataset"] == "fashion-mnist"
    assert manifest["seed"] == 0
    assert manifest["epochs"] == 1
    assert manifest["hyperparameters"]["batch_size"] == 64
    assert manifest["hyperparameters"]["augment"] is False
    assert manifest["export_check"]["opset"] == 17
    assert len(manifest["history"]) == 1
    assert manifest["command"].startswith("python -m model_zoo build tiny-resnet ")
    assert "--epochs 1" in manifest["command"]
    assert "--no-augment" in manifest["command"]
    for package in ("torch", "timm", "onnx", "onnxruntime"):
        assert manifest["versions"][package], package
    assert manifest["hardware"]["cpu_count"] >= 1
    assert manifest["hardware"]["torch_threads"] == 1
    assert manifest["train_seconds"] <= manifest["wall_seconds"]
    assert manifest["date"].endswith("+00:00")


def test_build_reuses_matching_cache(tiny_registry, idx_folder, cache_dir, monkeypatch):
    path = tiny_build(idx_folder)
    stamp = manifest_path(path).read_text()

    def fail(*args, **kwargs):
        raise AssertionError("train() called although the cached model matches")

    monkeypatch.setattr("model_zoo.training.train", fail)
    assert tiny_build(idx_folder) == path
    assert manifest_path(path).read_text() == stamp


def test_build_retrains_on_new_recipe_force_or_tampering(tiny_registry, idx_folder, cache_dir,
                                                         monkeypatch):
    import model_zoo.training

    calls = []
    real_train = model_zoo.training.train

    def counting_train(*args, **kwargs):
        calls.append(kwargs["seed"])
        return real_train(*args, **kwargs)

    monkeypatch.setattr("model_zoo.training.train", counting_train)
    path = tiny_build(idx_folder, train_limit=128)
    assert tiny_build(idx_folder, train_limit=128, seed=1) == path
    assert json.loads(manifest_path(path).read_text())["seed"] == 1
    tiny_build(idx_folder, train_limit=128, seed=1, force=True)

    with open(path, "r+b") as handle:
        handle.seek(-8, 2)
        handle.write(b"\x00" * 8)
    tiny_build(idx_folder, train_limit=128, seed=1)
    assert calls == [0, 1, 1, 1]


def test_build_with_output_writes_manifest_beside(tiny_registry, idx_folder, cache_dir, tmp_path):
    output = tmp_path / "models" / "tiny.onnx"
    assert tiny_build(idx_folder, output=output, train_limit=64) == output
    manifest = json.loads((tmp_path / "models" / "tiny.json").read_text())
    assert manifest["command"].endswith(f"--output {output}")
    assert not (cache_dir / "zoo").exists()


def test_build_rejects_unknown_dataset(tiny_registry):
    with pytest.raises(ValueError, match=r"unknown dataset 'svhn'; expected one of"):
        build("tiny-resnet", "svhn")


# Command line --------------------------------------------------------------------------------

def test_cli_list_shows_models():
    result = CliRunner().invoke(main, ["list", "resnet*"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("resnet18 ")
    assert "regnetx_002" not in result.output


def test_cli_build_unknown_model_suggests_name():
    result = CliRunner().invoke(main, ["build", "resnt18"])
    assert result.exit_code == 2
    assert "did you mean 'resnet18'" in result.output


def test_cli_build_prints_cached_path(tiny_registry, idx_folder, cache_dir):
    arguments = ["build", "tiny-resnet", "--epochs", "1", "--batch-size", "64",
                 "--threads", "1", "--no-augment", "--data-dir", str(idx_folder),
                 "--train-limit", "64", "--no-progress"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    assert path == default_model_path("tiny-resnet", "fashion-mnist")
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["recipe"]["train"]["lr"] == 2e-3


def test_cli_test_slice_writes_npz(idx_folder, tmp_path):
    output = tmp_path / "slice.npz"
    result = CliRunner().invoke(main, ["test-slice", "--data-dir", str(idx_folder),
                                       "--count", "50", "--output", str(output)])
    assert result.exit_code == 0, result.output
    with np.load(output) as archive:
        images, labels = archive["images"], archive["labels"]
    expected_images, expected_labels = stripe_images(128, seed=2)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, expected_images[:50])
    np.testing.assert_array_equal(labels, expected_labels[:50])


def test_cli_test_slice_rejects_too_many(idx_folder, tmp_path):
    result = CliRunner().invoke(main, ["test-slice", "--data-dir", str(idx_folder),
                                       "--count", "500", "--output", str(tmp_path / "s.npz")])
    assert result.exit_code == 2
    assert "--count must be at most the 128 images" in result.output


# The embedded default model ------------------------------------------------------------------

EXAMPLE_MODELS = sorted((REPO / "examples").glob("fashion_mnist_*.onnx"))


@pytest.mark.parametrize("path", EXAMPLE_MODELS, ids=[p.name for p in EXAMPLE_MODELS])
def test_example_model_matches_manifest(path):
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.stat().st_size < 10_000_000

    with np.load(REPO / "examples" / "fashion_mnist_test_2000.npz") as archive:
        images, labels = archive["images"], archive["labels"]
    inputs = (images.astype(np.float32) / 255.0)[:, None]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predictions = session.run(None, {"input": inputs})[0].argmax(axis=1)
    accuracy = float(np.mean(predictions == labels))

    # The slice contains the first 2000 of the 10,000 test images whose accuracy the manifest
    # records; 4 binomial standard deviations of a 2000-image mean bound the gap.
    recorded = manifest["test_accuracy"]
    bound = 4 * np.sqrt(recorded * (1 - recorded) / len(labels))
    assert abs(accuracy - recorded) <= bound
