"""The core's runtime path (`tl predict` / `tl evaluate` through `tl.core.inference`) with the
toy plugin's `read_batches` / `decode` / `score`: the three output formats hold the same rows,
`--skip-bad` turns an unreadable item into an `error` row, a failure leaves no output file,
and a failed run directory is refused in one line."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tl.core.registry as registry
from cli_inprocess import invoke as tl
from tl.core import Plugin
from toy_plugin import LABELS, SIZE, ToyPlugin, make_images


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """A run directory with the toy model (random init: these tests are about the runtime
    plumbing, not accuracy) exported by the core, as `tl run toy` leaves it."""
    import torch
    from tl.core import ClassifierModel, ExportSpec, create_backbone
    from tl.core.backbones import BackboneSpec
    from tl.core.export import export_onnx
    from torch import nn

    class Probabilities(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(image), dim=1)

    torch.manual_seed(0)
    backbone = create_backbone(
        BackboneSpec("resnet10t", "none"), image_size=SIZE, num_classes=0, in_chans=1
    )
    module = Probabilities(ClassifierModel(backbone, len(LABELS), mean=(0.5,), std=(0.25,)))
    images, _ = make_images(8, seed=1)
    spec = ExportSpec(
        module=module.eval(),
        batches=[{"image": images[:5]}, {"image": images[5:]}],
        input_names=["image"],
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
        agreement_output="probabilities",
    )
    run = tmp_path_factory.mktemp("inference") / "toy-run"
    run.mkdir()
    export_onnx(spec, run / "model.onnx", {"plugin": "toy", "labels": LABELS})
    (run / "manifest.json").write_text(json.dumps({"plugin": "toy", "status": "complete"}))
    return run


@pytest.fixture(autouse=True)
def toy_plugin(monkeypatch):
    real = registry.load_plugin
    monkeypatch.setattr(registry, "load_plugin", lambda n: ToyPlugin() if n == "toy" else real(n))


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and " — " in lines[0], stderr
    return lines[0]


def read_output(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".json":
        frame = pd.DataFrame(json.loads(path.read_text()))
    else:
        frame = pd.read_csv(path, dtype={"item": str, "error": str}, keep_default_na=False)
    return frame


def npy_folder(folder: Path, n: int, corrupt: str | None = None) -> Path:
    folder.mkdir()
    images, _ = make_images(n, seed=2)
    for i, image in enumerate(images):
        np.save(folder / f"img{i:03d}.npy", image)
    if corrupt:
        (folder / corrupt).write_bytes(b"\x93NUMPY garbage, not an array")
    return folder


def test_csv_json_parquet_and_stdout_hold_the_same_rows(toy_run, toy_data, tmp_path):
    frames = {}
    for suffix in (".csv", ".json", ".parquet"):
        out = tmp_path / f"preds{suffix}"
        code, stdout, stderr = tl("predict", str(toy_run), "--data", str(toy_data),
                                  "--device", "cpu", "--batch-size", "64", "--out", str(out))  # fmt: skip
        assert code == 0, stderr
        assert stdout.strip() == str(out)
        assert "240/240 images (" in stderr and "240 predictions → " in stderr
        frames[suffix] = read_output(out)
    code, stdout, _ = tl("predict", str(toy_run), "--data", str(toy_data), "--device", "cpu")
    assert code == 0
    frames["stdout"] = pd.read_csv(io.StringIO(stdout), dtype={"item": str})
    csv = frames[".csv"]
    assert list(csv.columns) == ["item", "predicted", *(f"p_{n}" for n in LABELS)]
    assert len(csv) == 240 and list(csv["item"]) == [str(i) for i in range(240)]
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(frame, csv, check_dtype=False, obj=name)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_skip_bad_writes_an_error_row_and_one_stderr_line(toy_run, tmp_path, suffix):
    data = npy_folder(tmp_path / "images", 70, corrupt="img010b.npy")
    out = tmp_path / f"preds{suffix}"
    code, _, stderr = tl("predict", str(toy_run), "--data", str(data), "--device", "cpu",
                         "--batch-size", "32", "--skip-bad", "--out", str(out))  # fmt: skip
    assert code == 0, stderr
    skipped = [line for line in stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and skipped[0].startswith(
        "skipped 1 unreadable image (first: img010b.npy — not a toy image: "
    ), stderr
    frame = read_output(out)
    assert len(frame) == 71 and list(frame.columns)[-1] == "error"
    bad = frame[frame["item"] == "img010b.npy"]
    assert len(bad) == 1 and bad["error"].iloc[0].startswith("not a toy image")
    assert pd.isna(bad["predicted"].iloc[0]) or bad["predicted"].iloc[0] == ""
    good = frame[frame["item"] != "img010b.npy"]
    assert (good["error"].isna() | (good["error"] == "")).all()
    assert good["predicted"].isin(LABELS).all()


def test_without_skip_bad_an_unreadable_item_is_one_line_and_no_output(toy_run, tmp_path):
    data = npy_folder(tmp_path / "images", 40, corrupt="img020b.npy")
    out = tmp_path / "preds.parquet"
    code, stdout, stderr = tl("predict", str(toy_run), "--data", str(data), "--device", "cpu",
                              "--batch-size", "8", "--out", str(out))  # fmt: skip
    assert code == 2 and stdout == ""
    line = one_line(stderr)
    assert "unreadable image" in line and "img020b.npy" in line and "--skip-bad" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]  # no output, no temp file


def test_an_existing_output_survives_a_failed_predict(toy_run, tmp_path):
    data = npy_folder(tmp_path / "images", 10, corrupt="bad.npy")
    out = tmp_path / "preds.csv"
    out.write_text("old\n")
    code, _, _ = tl("predict", str(toy_run), "--data", str(data), "--device", "cpu",
                    "--out", str(out))  # fmt: skip
    assert code == 2 and out.read_text() == "old\n"


def test_evaluate_scores_every_row_and_counts_skipped(toy_run, toy_data, tmp_path):
    out = tmp_path / "metrics.json"
    code, stdout, stderr = tl("evaluate", str(toy_run), "--data", str(toy_data), "--device",
                              "cpu", "--batch-size", "50", "--out", str(out))  # fmt: skip
    assert code == 0, stderr
    metrics = json.loads(stdout)
    assert metrics == json.loads(out.read_text())
    assert metrics["n"] == 240 and metrics["skipped"] == 0
    code, stdout, _ = tl("predict", str(toy_run), "--data", str(toy_data), "--device", "cpu")
    predicted = pd.read_csv(io.StringIO(stdout))["predicted"]
    with np.load(toy_data / "data.npz") as npz:
        truth = [LABELS[i] for i in npz["labels"]]
    assert metrics["accuracy"] == pytest.approx(float(np.mean(predicted == truth)))


@pytest.mark.parametrize(
    ("manifest", "keep_model", "expected"),
    [
        ({"status": "failed", "error": "error: out of memory — lower --batch-size"}, True,
         "this run failed: out of memory"),
        ({"status": "running"}, False, "this run has not finished"),
    ],
)  # fmt: skip
def test_a_failed_or_unfinished_run_is_one_line(toy_run, toy_data, tmp_path, manifest, keep_model, expected):  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    (run / "manifest.json").write_text(json.dumps({"plugin": "toy", **manifest}))
    if not keep_model:
        (run / "model.onnx").unlink()
    for command in ("predict", "evaluate"):
        code, stdout, stderr = tl(command, str(run), "--data", str(toy_data), "--device", "cpu")
        assert code == 2 and stdout == ""
        line = one_line(stderr)
        assert line.startswith(f"error: {expected}") and f"({run})" in line, line
    if manifest["status"] == "failed":
        assert f"--resume {run}" in line


def test_an_unknown_output_format_is_refused_before_any_work(toy_run, toy_data, tmp_path):
    code, _, stderr = tl("predict", str(toy_run), "--data", str(toy_data), "--out",
                         str(tmp_path / "preds.xlsx"))  # fmt: skip
    assert code == 2 and "unknown output format '.xlsx'" in one_line(stderr)
    assert not list(tmp_path.iterdir())


class _V1Toy(ToyPlugin):
    """A plugin not migrated yet: only the protocol v1 `predict`."""

    read_batches = Plugin.read_batches

    def predict(self, model, path, options):
        with np.load(Path(path) / "data.npz") as npz:
            probs = model.run({"image": npz["images"][:7]})["probabilities"]
        assert options["batch_size"] == 64 and "data" not in options
        return pd.DataFrame({"item": range(7), "predicted": [LABELS[i] for i in probs.argmax(1)]})


def test_a_plugin_without_read_batches_still_predicts(toy_run, toy_data, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "load_plugin", lambda n: _V1Toy())
    out = tmp_path / "preds.json"
    code, _, stderr = tl("predict", str(toy_run), "--data", str(toy_data), "--device", "cpu",
                         "--out", str(out))  # fmt: skip
    assert code == 0, stderr
    assert len(read_output(out)) == 7 and "7 predictions → " in stderr


def test_fingerprints_match_equal_rows_and_only_them(tmp_path):
    import numpy as np
    import pandas as pd
    from tl.core.overlap import FILE, OverlapCounter, row_fingerprints

    inputs = {"x": np.arange(12, dtype=np.float32).reshape(4, 3), "s": np.array(list("abca"))}
    prints = row_fingerprints(inputs)
    assert len(set(prints)) == 4  # row 0 and row 3 share "a" but not x
    assert row_fingerprints({"s": inputs["s"], "x": inputs["x"].copy()}) == prints
    pd.DataFrame({"fingerprint": prints[:2], "split": ["train", "val"]}).to_parquet(tmp_path / FILE)

    class Model:
        path = tmp_path / "model.onnx"

    counter = OverlapCounter(Model())
    counter.add(inputs)
    assert counter.summary() == {"train": 1, "val": 1, "evaluated": 4}
    assert "1 in its train split and 1 in its val split" in counter.warning()
    fresh = OverlapCounter(Model())
    fresh.add({"x": inputs["x"] + 100, "s": inputs["s"]})
    assert fresh.summary()["train"] == 0 and fresh.warning() is None
