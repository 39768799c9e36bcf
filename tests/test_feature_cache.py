"""Cached backbone features: a frozen-backbone head trains on features computed once and ends
where the uncached loop ends; runs write the same artifacts."""

import json

import pytest
import torch
from safetensors.torch import load_file
from tl.core.run import run_plugin
from toy_plugin import ToyPlugin, toy_options


def _run(toy_data, out, **options):
    run = run_plugin(ToyPlugin(), toy_options(toy_data, out, patience=0, **options))
    return run, json.loads((run / "metrics.json").read_text())


def _artifacts(run):
    return sorted(
        str(p.relative_to(run))
        for p in run.rglob("*")
        if p.is_file() and p.parent.name != "tb" and p.suffix != ".png"
    )


def test_cached_linear_probe_matches_uncached(toy_data, tmp_path):
    cached, m_cached = _run(toy_data, tmp_path / "on", epochs=2, strategy="linear")
    plain, m_plain = _run(
        toy_data, tmp_path / "off", epochs=2, strategy="linear", cache_features="off"
    )
    assert "cached backbone features" in (cached / "log.txt").read_text()
    assert "cached backbone features" not in (plain / "log.txt").read_text()
    for tag in ("best", "last"):
        a = load_file(str(cached / f"checkpoints/{tag}.safetensors"))
        b = load_file(str(plain / f"checkpoints/{tag}.safetensors"))
        assert a.keys() == b.keys()  # the whole model, not just the head
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    for key in ("accuracy", "auroc", "ece"):
        assert m_cached[key] == pytest.approx(m_plain[key], abs=1e-5), key
    assert _artifacts(cached) == _artifacts(plain)
    assert not (cached / "feature_cache").exists()


def test_gradual_caches_only_the_head_phase(toy_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TL_FEATURE_CACHE_MAX_BYTES", "1")  # force the memory-mapped .npy
    run, metrics = _run(
        toy_data, tmp_path, epochs=3, strategy="gradual", unfreeze_every=2, batch_size=48
    )
    log = (run / "log.txt").read_text()
    assert log.count("cached backbone features") == 1
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 4
    assert metrics["epochs_run"] == 3
    assert not (run / "feature_cache").exists()


def test_medical_with_cache_writes_the_same_artifacts(tmp_path):
    pytest.importorskip("tl_medical")
    from tl.core.registry import load_plugin
    from tl_medical.demo import write_dataset

    scans = write_dataset(tmp_path / "scans", {"normal": 12, "effusion": 12}, seed=3, image_size=48)
    runs = {}
    for mode in ("on", "off"):
        options = {
            "data": str(scans),
            "weights": "none",
            "backbone": "resnet10t",
            "image_size": 32,
            "epochs": 1,
            "batch_size": 16,
            "strategy": "linear",
            "device": "cpu",
            "cache_features": mode,
            "out": str(tmp_path / mode),
        }
        runs[mode] = run_plugin(load_plugin("medical"), options)
    assert "cached backbone features" in (runs["on"] / "log.txt").read_text()
    assert _artifacts(runs["on"]) == _artifacts(runs["off"])
    metrics = json.loads((runs["on"] / "metrics.json").read_text())
    assert metrics["onnx_parity"]["agreement"] == 1.0
