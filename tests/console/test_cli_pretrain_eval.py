"""`litesrl pretrain` / `eval` / `data` end to end through the real CLI, and bad input as one clear line."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, shared_dataset

LITESRL = [sys.executable, "-m", "console.cli.main"]


def run(*args, check=True, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="120")
    result = subprocess.run([*LITESRL, *map(str, args)], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nstdout:{result.stdout}\nstderr:{result.stderr}")
    return result


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "optical"
    run("data", "synth", root, "--per-class", 8, "--size", 32)
    return root


def test_pretrain_then_eval_on_synthetic_data(synthetic, tmp_path):
    out = tmp_path / "run"
    run("pretrain", "--data", synthetic, "--out", out, "--image-size", 16, "--batch-size", 8, "--steps", 4, "--workers", 0)
    assert {"checkpoint.pt", "metrics.jsonl", "config.json", "loss.png"} <= {p.name for p in out.iterdir()}
    again = run("pretrain", "--data", synthetic, "--out", out, "--steps", 4, check=False)
    assert_one_line_error(again, "already holds a run", "--resume")
    run("pretrain", "--data", synthetic, "--out", out, "--image-size", 16, "--batch-size", 8, "--steps", 6, "--workers", 0,
        "--resume")
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 6
    ev = tmp_path / "eval"
    result = run("eval", "--data", synthetic, "--checkpoint", out / "checkpoint.pt", "--train-fraction", 0.5, "--epochs", 20,
                 "--out", ev, "--json")
    payload = json.loads(result.stdout)
    assert payload["classes"] == ["bare", "field", "forest", "urban", "water"]
    assert payload["train_images"] == 20 and payload["test_images"] == 20
    assert 0.0 <= payload["overall_accuracy"] <= 1.0 and "step 6" in payload["encoder"]
    assert {"results.json", "confusion.txt", "confusion.png", "tsne.png"} <= {p.name for p in ev.iterdir()}


def test_random_init_baseline_and_finetune(synthetic, tmp_path):
    result = run("eval", "--data", synthetic, "--mode", "finetune", "--image-size", 16, "--epochs", 2,
                 "--train-fraction", 0.5, "--out", tmp_path, "--no-tsne", "--json")
    payload = json.loads(result.stdout)
    assert payload["encoder"] == "random init" and payload["mode"] == "finetune"


def test_bad_input_gives_one_clear_line_and_a_nonzero_exit(synthetic, tmp_path):
    assert_one_line_error(run("pretrain", "--data", tmp_path / "nope", "--out", tmp_path / "o", check=False), "does not exist")
    empty_class = tmp_path / "labelled"
    (empty_class / "a").mkdir(parents=True)
    (empty_class / "b").mkdir()
    shutil.copy(next((synthetic / "field").iterdir()), empty_class / "a" / "x.png")
    assert_one_line_error(run("eval", "--data", empty_class, check=False), "class folder", "has no images")
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"garbage")
    assert_one_line_error(run("eval", "--data", synthetic, "--checkpoint", bad_ckpt, check=False), "not readable")
    assert_one_line_error(run("eval", "--data", synthetic, "--mode", "probe", "--no-tsne", check=False),
                          "unknown evaluation mode")
    assert_one_line_error(run("pretrain", "--data", synthetic, "--modality", "lidar", check=False), "unknown modality")
    assert_one_line_error(run("pretrain", "--data", synthetic, "--sar-radiometry", "harsh", check=False),
                          "unknown --sar-radiometry")
    bad_flag = run("pretrain", "--data", synthetic, "--batch-size", "many", check=False)
    assert bad_flag.returncode == 2 and "Traceback" not in bad_flag.stderr and "batch-size" in bad_flag.stderr


def test_a_corrupt_image_is_skipped_and_reported_and_strict_fails(synthetic, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic, data)
    (data / "field" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    result = run("eval", "--data", data, "--image-size", 16, "--epochs", 5, "--train-fraction", 0.5, "--no-tsne", "--json",
                 "--out", tmp_path / "e")
    assert "skipped 1 unreadable" in result.stderr and "broken.jpg" in result.stderr
    assert json.loads(result.stdout)["skipped_files"] == 1
    strict = run("eval", "--data", data, "--image-size", 16, "--strict", "--out", tmp_path / "e2", check=False)
    assert_one_line_error(strict, "--strict")


@pytest.mark.realdata
def test_end_to_end_on_real_optical_and_sar_images(tmp_path):
    """A small real subset (links to ../shared/datasets files, nothing copied): pretrain -> checkpoint -> eval."""
    for name, modality, split in (("rsscn7", "optical", "stratified"), ("mstar_soc10", "sar", "block")):
        source = shared_dataset(name)
        subset = tmp_path / name
        for class_dir in sorted(p for p in source.iterdir() if p.is_dir())[:3]:
            (subset / class_dir.name).mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:20]:
                (subset / class_dir.name / image.name).symlink_to(image)
        out = tmp_path / f"{name}-run"
        sar = ("--rotation", "any", "--sar-radiometry", "strong") if modality == "sar" else ()
        run("pretrain", "--data", subset, "--modality", modality, "--out", out, "--image-size", 32, "--batch-size", 16,
            "--steps", 3, "--workers", 0, *sar)
        # the MSTAR target, as the benchmark probes it
        centre = ("--load-size", 48, "--centre-crop", 30) if modality == "sar" else ()
        result = run("eval", "--data", subset, "--checkpoint", out / "checkpoint.pt", "--split", split, "--block-size", 5,
                     "--train-fraction", 0.5, "--epochs", 10, "--out", tmp_path / f"{name}-eval", "--json", *centre)
        payload = json.loads(result.stdout)
        if modality == "sar":
            assert json.loads((out / "config.json").read_text())["augment"]["sar_radiometry"] == "strong"
        assert payload["modality"] == modality and payload["train_images"] == 30 and payload["test_images"] == 30
        assert len(payload["per_class_accuracy"]) == 3
