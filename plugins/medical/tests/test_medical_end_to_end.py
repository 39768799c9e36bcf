"""The medical plugin through the real `tl` command: run, predict/evaluate without torch,
patient-level splits, bad input, and transfer through --weights."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tl_medical.demo import write_dataset

FAST = ["--backbone", "resnet10t", "--image-size", "64", "--batch-size", "16", "--device", "cpu"]

BLOCK_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch' (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoTorch())
from tl.cli.main import main
main(sys.argv[1:])
"""


def tl(*args: str, block_torch: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    if block_torch:
        cmd = [sys.executable, "-c", BLOCK_TORCH, *args]
    else:
        cmd = [sys.executable, "-m", "tl.cli", *args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "TL_VERBOSE": "0"}
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"tl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return proc


def tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("med") / "scans"
    return write_dataset(root, {"normal": 30, "nodule": 30, "effusion": 30}, seed=3, image_size=96)


@pytest.fixture(scope="module")
def run_dir(scans, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    before = tree_hash(scans)
    proc = tl(
        "run",
        "medical",
        "--data",
        str(scans),
        "--weights",
        "none",
        "--epochs",
        "3",
        "--out",
        str(out),
        *FAST,
    )
    assert tree_hash(scans) == before, "tl run modified the input data"
    run = Path(proc.stdout.strip().splitlines()[-1])
    assert run.parent == out and run.name.startswith("medical-")
    (out / "tl-run.log").write_text(proc.stdout + proc.stderr)  # the console, for privacy checks
    return run


def test_run_writes_the_contracted_run_directory(run_dir):
    for name in [
        "model.onnx",
        "metrics.json",
        "report.md",
        "splits.csv",
        "history.csv",
        "test_predictions.csv",
        "manifest.json",
        "config.yaml",
        "training_curves.png",
        "confusion_matrix.png",
        "roc.png",
        "gradcam.png",
        "checkpoints/best.safetensors",
        "checkpoints/last.safetensors",
    ]:
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in [
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "auroc",
        "ece",
        "ece_calibrated",
        "temperature",
        "per_class",
    ]:
        assert key in metrics, key
    assert set(metrics["per_class"]) >= {
        "normal",
        "nodule",
        "effusion",
        "macro avg",
        "weighted avg",
    }
    assert metrics["onnx_parity"]["max_abs_diff"] < 1e-3
    assert metrics["onnx_parity"]["agreement"] >= 0.99
    report = (run_dir / "report.md").read_text()
    assert "Classification report" in report and "![gradcam](gradcam.png)" in report


def test_no_patient_crosses_splits(run_dir):
    splits = pd.read_csv(run_dir / "splits.csv")
    assert set(splits["split"]) == {"train", "val", "test"}
    patients = splits.dropna(subset=["patient"])
    assert len(patients) > 0
    assert (patients.groupby("patient")["split"].nunique() == 1).all()


def test_no_dicom_identifier_leaves_the_data(run_dir, scans):
    import pydicom

    identifiers = set()
    for file in list(scans.rglob("*.dcm"))[:40]:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        identifiers |= {str(ds.PatientID), str(ds.PatientName), str(ds.PatientBirthDate)}
    identifiers.discard("")
    # every DICOM carries a name, a birth date and an ID (else this test proves nothing)
    assert len(identifiers) >= 3 and any("^" in i for i in identifiers)
    # plus the parts of a name (DOE^JANE → DOE, JANE), in UTF-8 and UTF-16 (binary files)
    identifiers |= {part for i in identifiers if "^" in i for part in i.split("^") if len(part) > 3}
    preds = run_dir.parent / "privacy-predictions.csv"
    proc = tl("predict", str(run_dir), "--data", str(scans), "--out", str(preds))
    console = proc.stdout + proc.stderr + (run_dir.parent / "tl-run.log").read_text()
    files = [f for f in run_dir.rglob("*") if f.is_file()] + [preds]
    assert any(f.name == "model.onnx" for f in files) and any("tfevents" in f.name for f in files)
    assert any(f.suffix == ".safetensors" for f in files)
    for ident in identifiers:
        assert ident not in console, f"{ident} in the console output"
        for file in files:
            blob = file.read_bytes()
            for encoded in (ident.encode(), ident.encode("utf-16-le")):
                assert encoded not in blob, f"{ident} found in {file.name}"


def test_predict_and_evaluate_run_without_torch(run_dir, scans, tmp_path):
    out = tmp_path / "preds.csv"
    proc = tl("predict", str(run_dir), "--data", str(scans), "--out", str(out), block_torch=True)
    preds = pd.read_csv(out)
    assert len(preds) == len(list(scans.rglob("*.dcm"))) + len(list(scans.rglob("*.png")))
    assert f"{len(preds)}/{len(preds)} images (" in proc.stderr  # progress, then the total
    assert {"item", "predicted", "p_normal", "p_nodule", "p_effusion"} <= set(preds.columns)
    assert preds[["p_normal", "p_nodule", "p_effusion"]].sum(axis=1).between(0.999, 1.001).all()
    proc = tl("evaluate", str(run_dir), "--data", str(scans), block_torch=True)
    metrics = json.loads(proc.stdout)
    assert metrics["n"] == len(preds) and 0 <= metrics["accuracy"] <= 1


def test_onnx_predictions_match_the_test_predictions_of_the_run(run_dir, scans, tmp_path):
    out = tmp_path / "preds.csv"
    tl("predict", str(run_dir / "model.onnx"), "--data", str(scans), "--out", str(out))
    preds = pd.read_csv(out).set_index("item")
    test = pd.read_csv(run_dir / "test_predictions.csv").set_index("item")
    joined = test.join(preds.add_suffix("_onnx"))
    assert (joined["predicted"] == joined["predicted_onnx"]).mean() >= 0.98
    assert (joined["p_nodule"] - joined["p_nodule_onnx"]).abs().max() < 1e-3


def test_several_processes_predict_with_one_model_at_once(run_dir, scans, tmp_path):
    outs = [tmp_path / f"preds{k}.csv" for k in range(3)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tl.cli",
                "predict",
                str(run_dir),
                "--data",
                str(scans),
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for out in outs
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    first = pd.read_csv(outs[0])
    assert len(first) == len(list(scans.rglob("*.dcm"))) + len(list(scans.rglob("*.png")))
    for out in outs[1:]:
        pd.testing.assert_frame_equal(pd.read_csv(out), first)


def test_predict_skip_bad_counts_and_lists_the_unreadable_image(run_dir, scans, tmp_path):
    import shutil

    data = tmp_path / "scans"
    shutil.copytree(scans, data)
    _corrupt_image(data)
    out = tmp_path / "preds.csv"
    failed = tl("predict", str(run_dir), "--data", str(data), "--out", str(out), check=False)
    assert failed.returncode == 2 and "broken.png" in failed.stderr and not out.exists()
    proc = tl("predict", str(run_dir), "--data", str(data), "--out", str(out), "--skip-bad")
    assert "skipped 1 unreadable image (first: normal/broken.png" in proc.stderr
    preds = pd.read_csv(out)
    bad = preds[preds["error"].notna()]
    assert bad["item"].tolist() == ["normal/broken.png"]
    assert preds["predicted"].notna().sum() == len(preds) - 1
    metrics = json.loads(tl("evaluate", str(run_dir), "--data", str(data), "--skip-bad").stdout)
    assert metrics["skipped"] == 1 and metrics["n"] == len(preds) - 1


@pytest.mark.parametrize(
    "content, expected",
    [(b"\xff\xfe\x00garbage\x00\n", "not utf-8"), (b"", "image list"),
     (b"file\na.png\n", "column 'path' is not in the data")],
)  # fmt: skip
def test_predict_on_a_bad_image_list_is_one_line(run_dir, tmp_path, content, expected):
    listing = tmp_path / "list.csv"
    listing.write_bytes(content)
    proc = tl("predict", str(run_dir), "--data", str(listing), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert expected in line.lower(), line


def _corrupt_image(root: Path) -> None:
    (root / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")


def _truncated_dicom(root: Path) -> None:
    source = next((root / "nodule").glob("*.dcm"))
    (root / "nodule" / "cut.dcm").write_bytes(source.read_bytes()[:700])


def _one_class(root: Path) -> None:
    for folder in ("nodule", "effusion"):
        for file in (root / folder).iterdir():
            file.unlink()
        (root / folder).rmdir()


def _manifest_without_label(root: Path) -> None:
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.dcm"))
    pd.DataFrame({"path": files, "diagnosis": "x"}).to_csv(root / "manifest.csv", index=False)


@pytest.mark.parametrize(
    "damage, extra, expected",
    [
        (_corrupt_image, [], "broken.png"),
        (_truncated_dicom, [], "cut.dcm"),
        (_one_class, [], "class"),
        (_manifest_without_label, [], "label"),
        (None, ["--backbone", "resnet10x"], "unknown backbone"),
        (None, ["--weights", "/nonexistent/weights.safetensors"], "not found"),
    ],
    ids=[
        "corrupt-image",
        "truncated-dicom",
        "one-class",
        "manifest-without-label",
        "unknown-backbone",
        "missing-weights",
    ],
)
def test_bad_input_exits_2_with_one_line_and_leaves_data_untouched(
    tmp_path, damage, extra, expected
):
    root = write_dataset(
        tmp_path / "data", {"normal": 10, "nodule": 10, "effusion": 10}, seed=1, image_size=64
    )
    if damage is not None:
        damage(root)
    before = tree_hash(root)
    proc = tl(
        "run",
        "medical",
        "--data",
        str(root),
        "--weights",
        "none",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "runs"),
        *FAST,
        *extra,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and " — " in lines[-1]
    assert expected in lines[-1]
    assert "Traceback" not in proc.stderr
    assert tree_hash(root) == before


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--data", "/nonexistent/folder"], "not found"),
        (["--data", "EMPTY"], "no image"),
    ],
)
def test_missing_or_empty_data_exits_2(tmp_path, args, expected):
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    proc = tl(
        "run",
        "medical",
        *args,
        "--weights",
        "none",
        *FAST,
        "--out",
        str(tmp_path / "runs"),
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert expected in proc.stderr.lower()


def test_hub_weights_offline_fail_fast_with_one_line(tmp_path, scans):
    from tl.core.backbones import hub_reachable

    if hub_reachable():
        pytest.skip("the model hub is reachable here; the offline error cannot be provoked")
    proc = tl(
        "run",
        "medical",
        "--data",
        str(scans),
        "--weights",
        "hub",
        *FAST,
        "--out",
        str(tmp_path),
        check=False,
    )
    assert proc.returncode == 2
    assert "unreachable" in proc.stderr and "--weights" in proc.stderr
