"""`tl pretrain driving`: SimCLR on unlabelled road images → weights that `tl run driving`
loads into the detector's features-only backbone (every tensor accounted for), ONNX parity,
the method choice, and one-line errors for folders without images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tl.core import BackboneSpec, Config, RunConfig
from tl.core.backbones import load_tl_weights
from tl_driving.options import DrivingOptions
from tl_driving.plugin import DrivingPlugin
from tl_driving.pretrain import resolve_method

BACKBONE = "mobilenetv3_small_050"
SMALL = {
    "backbone": BACKBONE, "weights": "none", "device": "cpu", "epochs": 1, "batch_size": 16,
    "image_size": 96, "seed": 0,
}  # fmt: skip


def _single_thread(fn, *args):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def unlabelled(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Day and night frames without their labels, in nested folders."""
    root = tmp_path_factory.mktemp("unlabelled")
    for domain in ("day", "night"):
        (root / domain).mkdir()
        for image in sorted((scenes / domain / "images").glob("*.jpg"))[:20]:
            shutil.copy(image, root / domain / image.name)
    return root


@pytest.fixture(scope="module")
def pretrained(unlabelled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tl.core.run import pretrain_plugin

    out = tmp_path_factory.mktemp("pretrain")
    options = {"data": str(unlabelled), "out": str(out), **SMALL, "epochs": 2}
    return _single_thread(pretrain_plugin, DrivingPlugin(), options)


def _load_into_detector(weights: Path, data_path: Path, backbone: str) -> tuple:
    plugin = DrivingPlugin()
    options = Config(RunConfig(), DrivingOptions(image_size=96, head_channels=32))
    data = plugin.load(data_path, options)
    model = plugin.build_model(BackboneSpec(backbone, "none"), data, options)
    summary = load_tl_weights(
        model, weights, adapt=lambda state, meta: plugin.adapt_weights(state, meta, model, data)
    )
    return model, summary


def test_simclr_weights_fill_every_detector_backbone_tensor(pretrained: Path, scenes: Path):
    from safetensors.torch import load_file

    info = json.loads((pretrained / "pretrain.json").read_text())
    assert info["weights_meta"]["method"] == "simclr" and info["images"] == 40
    assert info["scene_augmentation"]["horizontal_flip"] is True
    ssl = load_file(str(pretrained / "backbone.safetensors"))
    model, summary = _load_into_detector(
        pretrained / "backbone.safetensors", scenes / "night", BACKBONE
    )
    backbone = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    assert summary["loaded"] == len(backbone)
    # the detector ends at the stride-32 features: only MobileNetV3's conv_head is left over
    assert sorted(summary["skipped"]) == ["backbone.conv_head.bias", "backbone.conv_head.weight"]
    assert len(ssl) == len(backbone) + len(summary["skipped"])
    for key, tensor in backbone.items():
        assert torch.equal(tensor, ssl[key]), key


def test_renamed_feature_modules_are_mapped_the_way_timm_maps_them(scenes: Path, tmp_path: Path):
    """ConvNeXt's features-only wrapper flattens ``stages.0`` into ``stages_0``: the plain
    names of a SimCLR backbone must still land on every detector tensor."""
    import timm
    from tl.core.checkpoints import save_backbone

    holder = torch.nn.Module()
    holder.backbone = timm.create_model("convnext_atto", num_classes=0)
    weights = save_backbone(
        holder, tmp_path / "backbone.safetensors", {"backbone": "convnext_atto"}
    )
    plain = {f"backbone.{k}": v for k, v in holder.backbone.state_dict().items()}
    model, summary = _load_into_detector(weights, scenes / "night", "convnext_atto")
    backbone = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    assert "backbone.stages_0.blocks.0.conv_dw.weight" in backbone
    assert summary["loaded"] == len(backbone)
    assert sorted(summary["skipped"]) == ["backbone.head.norm.bias", "backbone.head.norm.weight"]
    for key, tensor in backbone.items():
        source = key.replace("stages_", "stages.").replace("stem_", "stem.")
        assert torch.equal(tensor, plain[source]), key


def test_run_from_simclr_weights_exports_onnx_with_parity(
    pretrained: Path, scenes: Path, tmp_path: Path
):
    from tl.core.run import run_plugin

    options = {
        "data": str(scenes / "night"), "out": str(tmp_path), **SMALL,
        "weights": str(pretrained), "head_channels": 32,
    }  # fmt: skip
    run = _single_thread(run_plugin, DrivingPlugin(), options)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["onnx_parity"]["max_abs_diff"] <= metrics["onnx_parity"]["tolerance"]
    assert metrics["onnx_parity"]["rows"] > 1 and (run / "model.onnx").stat().st_size > 0
    assert "240 tensors loaded, 2 not fitting" in (run / "report.md").read_text()


def test_method_auto_is_supervised_only_with_labels(scenes: Path, unlabelled: Path):
    assert resolve_method(scenes / "night", None) == "supervised"
    assert resolve_method(unlabelled, None) == "simclr"
    assert resolve_method(scenes / "night", "simclr") == "simclr"


@pytest.mark.parametrize("content", ["nothing", "text only", "three images"])
def test_folder_without_enough_images_is_a_one_line_error(
    content: str, scenes: Path, tmp_path: Path, capsys, monkeypatch
):
    from tl.cli.main import main

    monkeypatch.setenv("TL_COMMAND_LINE", "tl pretrain driving")
    folder = tmp_path / "frames"
    folder.mkdir()
    if content == "text only":
        (folder / "notes.txt").write_text("no images here")
    if content == "three images":
        for image in sorted((scenes / "night" / "images").glob("*.jpg"))[:3]:
            shutil.copy(image, folder / image.name)
    args = ["pretrain", "driving", "--data", str(folder), "--weights", "none"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--backbone", BACKBONE, "--out", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    expected = "only 3 images" if content == "three images" else "no images found"
    assert expected in lines[0]
