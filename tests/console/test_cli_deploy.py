"""Protocol flags of `litesrl eval`, then a saved classifier through `litesrl predict` and `litesrl export`."""

import csv
import io
import json
import shutil
import sys

import pytest
import torch
import torchvision
from torch import nn

from engine.classifier import load_classifier
from engine.data.synthetic import generate
from engine.errors import ConfigError
from engine.evaluate import load_backbone, prepare
from engine.export import ONNX_OPSET, export
from engine.model import ModelConfig
from tests.console.test_cli_pretrain_eval import assert_one_line_error, run


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    generate(root / "train", "optical", per_class=8, size=32)
    generate(root / "test", "optical", per_class=3, size=32, seed=7)
    run("pretrain", "--data", root / "train", "--out", root / "run", "--image-size", 16, "--batch-size", 8, "--steps", 3,
        "--workers", 0)
    return root


@pytest.mark.slow
@pytest.mark.timeout(900)  # minutes on a loaded 2-core machine
def test_protocol_tables_and_bad_fractions(folders, tmp_path):
    result = run("eval", "--data", folders / "train", "--checkpoint", folders / "run" / "checkpoint.pt",
                 "--train-fraction", "0.25,0.5", "--seeds", 2, "--knn", 3, "--out", tmp_path, "--json")
    payload = json.loads(result.stdout)
    assert [t["fraction"] for t in payload["tables"]] == [0.25, 0.5] and payload["baseline"] == "random init"
    assert all(len(t["difference"]["linear"]) == 2 for t in payload["tables"])
    assert (tmp_path / "protocol.md").read_text().count("paired difference") == 2
    assert_one_line_error(run("eval", "--data", folders / "train", "--train-fraction", "0.5,1.5", check=False), "(0, 1)",
                          "0.5,1.5")
    assert_one_line_error(run("eval", "--data", folders / "train", "--train-fraction", "0.05", check=False),
                          "train fraction 0.05 leaves class 'bare' (8 images) without a training image")
    fewer = tmp_path / "fewer"
    shutil.copytree(folders / "test", fewer)
    shutil.rmtree(fewer / "water")
    assert_one_line_error(run("eval", "--data", folders / "train", "--test-data", fewer, check=False),
                          "{bare, field, forest, urban}", "{bare, field, forest, urban, water}")


@pytest.mark.slow
@pytest.mark.timeout(900)  # minutes on a loaded 2-core machine
def test_saved_classifier_predicts_what_eval_scored_and_exports(folders, tmp_path):
    classifier_path = tmp_path / "classifier.pt"
    result = run("eval", "--data", folders / "train", "--test-data", folders / "test", "--checkpoint",
                 folders / "run" / "checkpoint.pt",
                 "--save-classifier", classifier_path, "--out", tmp_path / "eval", "--no-tsne", "--json")
    accuracy = json.loads(result.stdout)["overall_accuracy"]
    assert json.loads(result.stdout)["test_images"] == 15

    scenes = tmp_path / "scenes"
    shutil.copytree(folders / "test", scenes)
    (scenes / "field" / "broken.png").write_bytes(b"not a png")
    predicted = run("predict", "--checkpoint", classifier_path, scenes)
    rows = list(csv.DictReader(io.StringIO(predicted.stdout)))
    assert len(rows) == 15 and set(rows[0]) == {"path", "tile_y", "tile_x", "label", "score"}
    correct = sum(row["label"] == row["path"].split("/")[-2] for row in rows)
    assert correct / 15 == pytest.approx(accuracy)  # the same preprocessing as the evaluation
    assert "skipped" in predicted.stderr and "broken.png" in predicted.stderr

    tiles = run("predict", "--checkpoint", classifier_path, scenes / "bare" / "bare_0000.png", "--tile", 20, "--stride", 12,
                "--out", tmp_path / "tiles.json")
    payload = json.loads((tmp_path / "tiles.json").read_text())
    assert [(p["tile_y"], p["tile_x"]) for p in payload["predictions"]] == [(0, 0), (0, 12), (12, 0), (12, 12)]
    assert sum(payload["predictions"][0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert "labelled 4 tile(s)" in tiles.stderr

    classifier, classes, preprocess, _ = load_classifier(classifier_path)
    images = torch.rand(3, 3, 16, 16)
    mean, std = torch.tensor(preprocess.mean).view(1, 3, 1, 1), torch.tensor(preprocess.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = classifier((images - mean) / std)

    run("export", classifier_path, "--format", "torchvision", "--out", tmp_path / "resnet.pth")
    plain = torchvision.models.resnet18(num_classes=len(classes))
    plain.load_state_dict(torch.load(tmp_path / "resnet.pth", weights_only=True), strict=True)
    torch.testing.assert_close(plain.eval()((images - mean) / std), expected, atol=1e-4, rtol=1e-4)
    meta = json.loads((tmp_path / "resnet.pth.json").read_text())
    assert meta["classes"] == classes and meta["normalisation_built_in"] is False

    run("export", classifier_path, "--format", "torchscript", "--out", tmp_path / "classifier.ts")
    scripted = torch.jit.load(str(tmp_path / "classifier.ts"))
    torch.testing.assert_close(scripted(images), expected, atol=1e-4, rtol=1e-4)

    export(folders / "run" / "checkpoint.pt", "torchvision", tmp_path / "backbone.pth")
    backbone, norm, _, _ = load_backbone(str(folders / "run" / "checkpoint.pt"), ModelConfig(), 0)
    headless = torchvision.models.resnet18()
    headless.fc = nn.Identity()
    headless.load_state_dict(torch.load(tmp_path / "backbone.pth", weights_only=True), strict=True)
    x = prepare((images * 255).to(torch.uint8), norm[0], norm[1], 16)
    torch.testing.assert_close(headless.eval()(x), backbone.eval()(x), atol=1e-4, rtol=1e-4)

    assert_one_line_error(run("export", classifier_path, "--format", "tflite", check=False), "unknown export format 'tflite'")
    assert_one_line_error(run("predict", "--checkpoint", folders / "run" / "checkpoint.pt", scenes, check=False),
                          "not a classifier")


def test_onnx_export_runs_in_onnxruntime(folders, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'litesrl[export]' onnxruntime)")
    pytest.importorskip("onnx", reason="onnx not installed (pip install 'litesrl[export]')")
    out = export(folders / "run" / "checkpoint.pt", "onnx", tmp_path / "encoder.onnx")
    backbone, norm, _, _ = load_backbone(str(folders / "run" / "checkpoint.pt"), ModelConfig(), 0)
    images = torch.rand(5, 3, 16, 16)  # another batch size than the export's example: the batch axis is dynamic
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (features,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = backbone.eval()((images - norm[0].view(1, 3, 1, 1)) / norm[1].view(1, 3, 1, 1))
    torch.testing.assert_close(torch.from_numpy(features), expected, atol=1e-4, rtol=1e-3)
    assert json.loads(out.with_name("encoder.onnx.json").read_text())["onnx_opset"] == ONNX_OPSET


def test_onnx_without_the_package_names_the_extra(folders, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"needs the 'onnx' package: pip install 'litesrl\[export\]'"):
        export(folders / "run" / "checkpoint.pt", "onnx", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
