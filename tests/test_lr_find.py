"""`--lr find`: the range test and the valley rule on their own (a real trainer on a tiny
regression), and the option's one-line errors. The end-to-end `--lr find` run (config.yaml,
plot, report) is a `tl tune` trial in tests/test_tune.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from cli_inprocess import invoke
from torch import nn
from torch.utils.data import TensorDataset


def test_valley_picks_the_steep_descent_not_the_minimum():
    from tl.core.lr_finder import valley

    lrs = list(np.geomspace(1e-7, 10, 60))
    # flat until 1e-4, falling until 1e-1, then exploding
    losses = [2.0 if lr < 1e-4 else 2.0 - 0.5 * math.log10(lr / 1e-4) if lr < 1e-1
              else 0.5 + 20 * (lr - 1e-1) for lr in lrs]  # fmt: skip
    chosen = valley(lrs, losses)
    assert 1e-4 < chosen < 1e-1
    assert chosen < lrs[int(np.argmin(losses))]


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Identity()
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.backbone(x))


def test_range_test_sweeps_up_and_stops_when_the_loss_diverges(tmp_path):
    from tl.core.lr_finder import END, START, range_test
    from tl.core.strategies import StrategyPlan
    from tl.core.task import Task
    from tl.core.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    x = torch.randn(256, 4)
    data = TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]))

    def step(model, batch):
        inputs, targets = batch
        return nn.functional.mse_loss(model(inputs), targets)

    model = _Tiny()
    names = [f"head.{n}" for n, _ in model.head.named_parameters()]
    groups = [{"params": list(model.head.parameters()), "lr": 1.0, "weight_decay": 0.0}]
    plan = StrategyPlan("full", [], names, groups, trainable_stages=0)
    task = Task(step, lambda m, b: {"loss": step(m, b)}, lambda o, s: {}, "loss", "min")
    config = TrainConfig(lr=1.0, batch_size=32, device="cpu", weight_decay=0.0, optimizer="sgd")
    trainer = Trainer(config, task, tmp_path, tensorboard=False)
    result = range_test(trainer, model, plan, data, None, steps=100)
    ratios = np.diff(np.log(result.lrs))
    assert result.lrs[0] == pytest.approx(START) and np.allclose(ratios, ratios[0])
    assert result.lrs[-1] < END and result.steps < 100  # diverged before the end
    assert max(result.losses) > 4 * min(result.losses)
    assert 1e-4 < result.chosen < result.min_loss_lr
    assert result.losses[result.lrs.index(result.chosen)] < result.losses[0]


def test_steps_and_report_section(tmp_path):
    from tl.core.lr_finder import lr_find_sections, steps_for

    assert steps_for(24, 8) == 30 and steps_for(10_000, 32) == 100 and steps_for(640, 16) == 80
    assert lr_find_sections(tmp_path) == []
    (tmp_path / "lr_find.json").write_text(json.dumps({"steps": 40, "start": 1e-7, "end": 10,
        "seconds": 1.5, "chosen": 3.2e-3, "min_loss_lr": 2e-2}))  # fmt: skip
    (section,) = lr_find_sections(tmp_path)
    assert "lr = 0.0032" in section.markdown and section.images == []


@pytest.mark.parametrize(
    "argv, says",
    [
        (["run", "medical", "--lr", "fast"], "neither a number nor 'find'"),
        (["run", "medical", "--lr", "0"], "not in the range x>0"),
        (["pretrain", "medical", "--lr", "find"], "--lr find is for `tl run`"),
    ],
)
def test_bad_lr_values_are_one_line(tmp_path, argv, says):
    code, _, stderr = invoke(*argv, "--data", str(tmp_path), "--out", str(tmp_path / "runs"))
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and says in lines[0], stderr
    assert not (tmp_path / "runs").exists()
