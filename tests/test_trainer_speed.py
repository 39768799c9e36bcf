"""What makes the trainer as fast as a hand-written loop without changing its recipe:
precise BatchNorm from the epoch's own last batches (no extra pass), one weights file per
improving epoch (``last`` hard-links ``best``), checkpoints written behind the loop, fused
optimizer kernels, and medical's batch-level augmentation."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file
from test_trainer_callbacks import TinyPlan, training_step
from tl.core.task import Task
from tl.core.trainer import TrainConfig, Trainer
from torch import nn
from torch.utils.data import TensorDataset


class InputNorm(nn.Module):
    """BatchNorm first: its batch statistics are the input's, whatever the weights do."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(3)
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x))


def _predict(model, batch):
    x, y = batch
    return {"logits": model(x), "targets": y}


class Scores:
    """Validation scores 1, 2, 2: epochs 1 and 2 improve, epoch 3 does not."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, outputs, split):
        self.calls += 1
        return {"score": float(min(self.calls, 2))}


N, BATCH = 96, 16
X = torch.randn(N, 3, generator=torch.Generator().manual_seed(0)) * 3 + 5
TRAIN = TensorDataset(X, (X[:, 0] > 5).long())


def fit(run_dir, **config):
    torch.manual_seed(0)
    task = Task(training_step, _predict, Scores(), monitor="score", monitor_mode="max")
    model = InputNorm()
    options = dict(epochs=3, batch_size=BATCH, lr=1e-2, device="cpu", patience=0, seed=0)
    trainer = Trainer(
        TrainConfig(**{**options, **config}), task, run_dir, tensorboard=False,
        weights_meta=lambda: {"plugin": "speed"},
    )  # fmt: skip
    trainer.fit(model, TinyPlan(model), TRAIN, TRAIN)
    return model, trainer


def _epoch_batches(trainer, epoch: int) -> list[torch.Tensor]:
    loader = trainer.loader(TRAIN, None, shuffle=True, epoch=epoch, distributed=True)
    return [x for x, _ in loader]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("speed")
    return {"precise": fit(root / "precise"), "ema": fit(root / "ema", precise_bn_below_steps=0)}


def test_precise_bn_is_the_average_of_the_epochs_last_batches(runs):
    model, trainer = runs["precise"]
    window = _epoch_batches(trainer, 1)[-TrainConfig.precise_bn_batches :]  # best: epoch 2
    mean = torch.stack([b.mean(0) for b in window]).mean(0)
    var = torch.stack([b.var(0) for b in window]).mean(0)
    torch.testing.assert_close(model.norm.running_mean, mean)
    torch.testing.assert_close(model.norm.running_var, var)
    assert model.norm.momentum == 0.1
    ema = runs["ema"][0].norm.running_mean
    assert (ema - mean).abs().max() > 0.1  # the exponential average still lags its zeros


def test_an_improving_epoch_writes_its_weights_once(runs):
    _, trainer = runs["precise"]
    folder = trainer.run_dir / "checkpoints"
    best, last = folder / "best.safetensors", folder / "last.safetensors"
    assert not os.path.samefile(best, last)  # epoch 3 did not improve: last moved on
    assert load_file(str(best)).keys() == load_file(str(last)).keys()
    assert not (folder / "last.state.pt").exists(), "nothing resumes from the final epoch"
    run_dir = trainer.run_dir.parent / "improving-epochs"
    fit(run_dir, epochs=2)
    folder = run_dir / "checkpoints"
    assert os.path.samefile(folder / "best.safetensors", folder / "last.safetensors")


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_the_optimizer_is_fused_on_cpu_and_steps_like_torchs_default(name):
    from tl.core.optim import build_optimizer

    def trained(fused_default: bool) -> tuple[torch.optim.Optimizer, torch.Tensor]:
        torch.manual_seed(0)
        model = InputNorm()
        config = TrainConfig(optimizer=name, lr=1e-2)
        groups = [{"params": list(model.parameters())}]
        if fused_default:
            optimizer = build_optimizer(config, groups)
        elif name == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        else:
            optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
        for step in range(5):
            x = X[step * BATCH : (step + 1) * BATCH]
            loss = nn.functional.cross_entropy(model(x), (x[:, 0] > 5).long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return optimizer, torch.cat([p.detach().flatten() for p in model.parameters()])

    fused, weights = trained(True)
    assert fused.defaults["fused"] is True
    torch.testing.assert_close(weights, trained(False)[1], rtol=1e-5, atol=1e-6)


def test_parameters_without_fused_kernels_keep_torchs_default():
    from tl.core.optim import build_optimizer

    complex_weight = nn.Parameter(torch.zeros(2, dtype=torch.complex64))
    optimizer = build_optimizer(TrainConfig(), [{"params": [complex_weight]}])
    assert not optimizer.defaults["fused"]


def test_the_best_epoch_comes_back_from_memory_not_from_its_file(tmp_path, monkeypatch):
    import tl.core.checkpoints as checkpoints

    def unread(*args, **kwargs):
        raise AssertionError("best.safetensors was read back")

    monkeypatch.setattr(checkpoints, "load_file", unread)
    model, trainer = fit(tmp_path / "run")  # epochs 1 and 2 improve, epoch 3 does not
    monkeypatch.undo()
    assert json_epoch(trainer.run_dir / "checkpoints/best.json") == 2
    best = load_file(str(trainer.run_dir / "checkpoints/best.safetensors"))
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    last = load_file(str(trainer.run_dir / "checkpoints/last.safetensors"))
    assert any(not torch.equal(last[k], best[k]) for k in best)


def json_epoch(path) -> int:
    import json

    return json.loads(path.read_text())["epoch"]
