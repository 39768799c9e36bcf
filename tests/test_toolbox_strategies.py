"""lora, prompt and prototypes: unit checks plus one real `run_plugin` each (toy plugin).

The runs use tiny models (resnet10t; vit_tiny_patch16_224 at 32 px; timm's 8-block,
64-dim ``test_vit2`` with average pooling for prompt runs), random init and 90 images of
oriented stripes, so the whole file stays well under a minute.
"""

import copy
import functools
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch
from safetensors.torch import load_file
from tl.core import ClassifierModel, ConfigError
from tl.core.backbones import BackboneSpec, load_tl_weights
from tl.core.checkpoints import save_weights
from tl.core.progress import ProgressReporter
from tl.core.run import build_and_load, run_plugin
from tl.core.run_config import resolve_run_config
from tl.core.seeding import seed_everything
from tl.core.strategies import parameter_counts
from tl.core.strategies.lora import build_lora_plan, resolve_targets
from tl.core.strategies.prompt import PromptedViT, build_prompt_plan
from tl.core.strategies.prototypes import fit_prototypes, select_shots
from toy_plugin import SIZE, ToyPlugin, toy_options


def stripes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal / vertical / diagonal stripes: separable even for random conv features."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = []
    for label in labels:
        coord = {0: yy, 1: xx, 2: yy + xx}[int(label)]
        wave = np.sin(2 * np.pi * coord / rng.uniform(5, 7) + rng.uniform(0, 2 * np.pi))
        images.append(128 + 60 * wave + rng.normal(0, 15, (SIZE, SIZE)))
    return np.clip(np.stack(images)[:, None], 0, 255).astype(np.uint8), labels.astype(np.int64)


@pytest.fixture(scope="module")
def stripes_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stripes")
    images, labels = stripes(90, 0)
    np.savez(folder / "data.npz", images=images, labels=labels)
    return folder


def small_model(name: str) -> ClassifierModel:
    """A fresh copy of one random-init model per name (creating timm models is slow)."""
    return copy.deepcopy(_template(name))


@functools.cache
def _template(name: str) -> ClassifierModel:
    torch.manual_seed(0)
    sized = {"img_size": 32} if "vit" in name else {}
    backbone = timm.create_model(name, num_classes=0, in_chans=1, **sized)
    return ClassifierModel(backbone, 3, mean=(0.5,), std=(0.25,))


def parity(run) -> dict:
    return json.loads((run / "metrics.json").read_text())["onnx_parity"]


# ------------------------------------------------------------------------------- lora
@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "resnet10t"])
def test_lora_merge_keeps_outputs_and_checkpoints_restore_exactly(name, tmp_path):
    model = small_model(name)
    plan = build_lora_plan(model, 1e-3, 0.05, {"lora_rank": 4})
    with torch.no_grad():  # B = 0 at init would make merging trivially exact
        for param_name, param in model.named_parameters():
            if "lora_B" in param_name:
                param.normal_(0, 0.05)
    model.eval()
    x = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        unmerged = model(x)
        plain = small_model(name).eval()
        assert (plain(x) - unmerged).abs().max() > 1e-3  # the adapters do change the output

    # the checkpoint: merged weights under the plain names, plus the adapters
    state = plan.checkpoint_state(model)
    plain_keys = set(plain.state_dict())
    assert plain_keys <= set(state)
    assert all(".lora_" in k for k in set(state) - plain_keys)
    with torch.no_grad():
        loaded = small_model(name).eval()
        path = save_weights(torch.nn.Identity(), tmp_path / "w.safetensors", {}, state)
        load_tl_weights(loaded, path)
        assert torch.allclose(loaded(x), unmerged, atol=1e-5)

    # resume / best reload: a fresh LoRA model gets the very same adapters back
    again = small_model(name)
    again_plan = build_lora_plan(again, 1e-3, 0.05, {"lora_rank": 4})
    missing, unexpected = again_plan.load_checkpoint_state(again, state)
    assert missing == [] and unexpected == []
    with torch.no_grad():
        assert torch.equal(again.eval()(x), unmerged)

    plan.finish(model)  # merge_and_unload
    assert type(model.backbone) is type(plain.backbone)
    assert not any("lora" in k for k in model.state_dict())
    with torch.no_grad():
        assert torch.allclose(model(x), unmerged, atol=1e-5)


def test_lora_freezes_base_and_targets_per_architecture():
    vit = small_model("vit_tiny_patch16_224")
    targets = resolve_targets(vit.backbone)
    assert len(targets) == 4 * len(vit.backbone.blocks)
    assert not any(t.startswith("patch_embed") for t in targets)
    cnn = small_model("resnet10t")
    convs = [
        n
        for n, m in cnn.backbone.named_modules()
        if isinstance(m, torch.nn.Conv2d) and m.groups == 1
    ]
    assert resolve_targets(cnn.backbone) == convs
    assert resolve_targets(cnn.backbone, r"layer4\..*conv\d") == [
        "layer4.0.conv1",
        "layer4.0.conv2",
    ]
    with pytest.raises(ConfigError, match="matches no"):
        resolve_targets(cnn.backbone, "qkv")

    build_lora_plan(cnn, 1e-3, 0.05, {})
    trainable = {n for n, p in cnn.named_parameters() if p.requires_grad}
    assert trainable == {n for n in dict(cnn.named_parameters()) if "lora_" in n or "head" in n}
    assert any(n.startswith("head.") for n in trainable)


def test_lora_run_exports_a_plain_graph_that_matches_its_checkpoint(stripes_data, tmp_path):
    run = run_plugin(
        ToyPlugin(),
        toy_options(stripes_data, tmp_path, strategy="lora", epochs=1, lora_rank=4),
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["strategy"] == "lora"
    assert 0 < metrics["trainable_params"] < metrics["total_params"] / 10
    assert parity(run)["max_abs_diff"] < 1e-4
    # the best checkpoint (merged) loads into a plain model and gives the ONNX outputs
    model = ToyPlugin().build_model(BackboneSpec("resnet10t", "none"), None, {})
    summary = load_tl_weights(model, run / "checkpoints" / "best.safetensors")
    assert summary["skipped"] and all(".lora_" in k for k in summary["skipped"])
    images = np.load(stripes_data / "data.npz")["images"][-8:]
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_probs = session.run(None, {"image": images})[0]
    with torch.no_grad():
        torch_probs = torch.softmax(model.eval()(torch.from_numpy(images)), 1).numpy()
    assert np.abs(onnx_probs - torch_probs).max() < 1e-4


# ----------------------------------------------------------------------------- prompt
@pytest.mark.parametrize("depth", ["shallow", "deep"])
def test_prompts_train_alone_and_are_removed_before_pooling(depth):
    model = small_model("test_vit2")  # global average pooling: stray prompts would count
    plan = build_prompt_plan(model, 1e-3, 0.05, {"prompt_tokens": 3, "prompt_depth": depth})
    vit = model.backbone.vit
    assert isinstance(model.backbone, PromptedViT)
    layers = len(vit.blocks) if depth == "deep" else 1
    assert model.backbone.prompt_tokens.shape == (layers, 3, 64)
    trainable, _ = parameter_counts(model)
    assert trainable == layers * 3 * 64 + 64 * 3 + 3
    seen = []
    vit.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    vit.norm.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    x = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    model(x).sum().backward()
    tokens = 1 + (32 // 16) ** 2  # register token + patches
    assert seen == [tokens + 3, tokens]
    grad = model.backbone.prompt_tokens.grad
    assert grad is not None and bool((grad.abs().sum(dim=(1, 2)) > 0).all())
    # checkpoints use the plain ViT names: a plain model loads them
    state = plan.checkpoint_state(model)
    assert "backbone.prompt_tokens" in state and "backbone.reg_token" in state
    missing, unexpected = plan.load_checkpoint_state(model, state)
    assert missing == [] and unexpected == []


def test_prompt_run_exports_with_parity(stripes_data, tmp_path):
    run = run_plugin(
        ToyPlugin(),
        toy_options(
            stripes_data,
            tmp_path,
            strategy="prompt",
            backbone="test_vit2",
            epochs=1,
            prompt_tokens=4,
        ),
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["trainable_params"] == 4 * 64 + 64 * 3 + 3
    assert parity(run)["max_abs_diff"] < 1e-4


def test_weights_of_a_prompt_run_continue_its_tokens(stripes_data, tmp_path):
    """run A (prompt) → run B --weights A --strategy prompt starts from A's trained tokens;
    another strategy loads the plain ViT and says that the tokens were skipped."""
    plugin = ToyPlugin()
    prompt = {"strategy": "prompt", "backbone": "test_vit2", "prompt_tokens": 4}
    run_a = run_plugin(plugin, toy_options(stripes_data, tmp_path / "a", epochs=1, **prompt))
    trained = load_file(str(run_a / "checkpoints" / "best.safetensors"))["backbone.prompt_tokens"]

    def start_of(weights: str, **overrides) -> tuple[torch.Tensor, dict, list[str]]:
        flags = {**toy_options(stripes_data, tmp_path, **prompt), "weights": weights, **overrides}
        options = resolve_run_config(plugin, flags)
        data = plugin.load(Path(options["data"]), options)
        seed_everything(0)
        lines: list[str] = []
        reporter = ProgressReporter(enabled=False)
        reporter.log = lines.append
        model, _, loaded = build_and_load(plugin, data, options, weights, reporter)
        return model.state_dict().get("backbone.prompt_tokens"), loaded, lines

    fresh, _, _ = start_of("none")
    for weights in (run_a, run_a / "checkpoints" / "best.safetensors"):
        tokens, loaded, lines = start_of(str(weights))
        assert torch.equal(tokens, trained) and not torch.equal(tokens, fresh)
        assert bool(trained.abs().sum() > 0) and loaded["skipped"] == 0
        assert lines == ["--weights: continuing the saved 4 shallow prompt tokens"]

    tokens, _, lines = start_of(str(run_a), prompt_tokens=6)  # a shape that does not fit
    assert not torch.equal(tokens[:, :4], trained)
    assert "pass --prompt-tokens 4 --prompt-depth shallow" in lines[0]
    tokens, loaded, lines = start_of(str(run_a), strategy="full")
    assert tokens is None and loaded["skipped"] == 1
    assert lines[0].startswith("--weights: the saved 4 shallow prompt tokens are skipped")

    options = toy_options(stripes_data, tmp_path / "b", epochs=1, **prompt)
    run_b = run_plugin(plugin, {**options, "weights": str(run_a)})
    assert "continuing the saved 4 shallow prompt tokens" in (run_b / "log.txt").read_text()
    assert parity(run_b)["max_abs_diff"] < 1e-4


def test_prompt_on_a_cnn_exits_2_with_one_line(stripes_data, tmp_path, monkeypatch, capsys):
    import tl.core.registry
    from tl.cli.main import main

    monkeypatch.setattr(tl.core.registry, "load_plugin", lambda name: ToyPlugin())
    argv = ["run", "toy", "--data", str(stripes_data), "--weights", "none"]
    argv += ["--backbone", "resnet10t", "--strategy", "prompt", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress log lines
    assert last.startswith("error: --strategy prompt needs a timm VisionTransformer")
    assert "--backbone vit_" in last and "Traceback" not in last


# ------------------------------------------------------------------------- prototypes
def test_prototypes_run_needs_no_training_and_beats_chance(stripes_data, tmp_path):
    run = run_plugin(
        ToyPlugin(),
        toy_options(stripes_data, tmp_path, strategy="prototypes", epochs=50, shots=10),
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 0 and metrics["trainable_params"] == 0
    assert metrics["accuracy"] > 0.8  # chance is 1/3
    assert parity(run)["max_abs_diff"] < 1e-4
    assert (run / "report.md").exists() and (run / "checkpoints" / "best.safetensors").exists()


def test_prototypes_refuse_multilabel_data():
    class MultiLabel:
        multilabel = True
        labels = ["a", "b"]

    with pytest.raises(ConfigError, match="multi-label"):
        fit_prototypes(small_model("resnet10t"), MultiLabel(), None, None)


def test_shots_per_class_are_seeded_and_capped():
    targets = np.array([0] * 10 + [1] * 3 + [2] * 7)
    chosen = select_shots(targets, 3, 5, seed=0)
    assert np.bincount(targets[chosen]).tolist() == [5, 3, 5]
    assert chosen.tolist() == select_shots(targets, 3, 5, seed=0).tolist()
    assert len(select_shots(targets, 3, None, seed=0)) == 20
