"""The trainer's seams: the `Task` value (plugin, pretraining, duck-typed objects), the
callback hooks and their order, `Trainer.save_checkpoint`, and resume after an interruption
ending bit for bit where an uninterrupted run ends."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import threading

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tl.core.callbacks import HOOKS, Callback
from tl.core.errors import Interrupted
from tl.core.interrupts import stop_the_run
from tl.core.task import Task, as_task, plugin_task, pretrain_as_task
from tl.core.trainer import TrainConfig, Trainer
from torch import nn
from torch.utils.data import TensorDataset


class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class TinyPlan:
    """Duck-typed strategy plan: everything trains."""

    def __init__(self, model: nn.Module) -> None:
        self.param_groups = [{"params": list(model.parameters())}]

    def apply(self, model: nn.Module, epoch: int) -> bool:
        return False

    def train_mode(self, model: nn.Module) -> None:
        model.train()

    def checkpoint_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def load_checkpoint_state(self, model, state):
        missing, unexpected = model.load_state_dict(state, strict=False)
        return list(missing), list(unexpected)


def training_step(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def predict_step(model, batch):
    x, y = batch
    logits = model(x)
    return {"logits": logits, "targets": y, "loss": nn.functional.cross_entropy(logits, y)}


def metrics(outputs, split):
    logits = torch.cat([o["logits"] for o in outputs])
    targets = torch.cat([o["targets"] for o in outputs])
    return {"accuracy": float((logits.argmax(1) == targets).float().mean())}


TASK = Task(training_step, predict_step, metrics, monitor="accuracy", monitor_mode="max")


def data(n: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return TensorDataset(x, (x[:, 0] + 0.3 * x[:, 1] > 0).long())


TRAIN, VAL = data(64, 0), data(32, 1)


def fit(run_dir, task=TASK, callbacks=(), resume=False, **config):
    torch.manual_seed(0)
    model = TinyModel()
    options = dict(epochs=3, batch_size=16, lr=1e-2, device="cpu", patience=0, seed=0)
    trainer = Trainer(
        TrainConfig(**{**options, **config}),
        task,
        run_dir,
        weights_meta=lambda: {"plugin": "tiny"},
        tensorboard=False,
        callbacks=callbacks,
    )
    result = trainer.fit(model, TinyPlan(model), TRAIN, VAL, resume=resume)
    return model, result, trainer


def without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        for hook in HOOKS:
            setattr(self, hook, self._recorder(hook))

    def _recorder(self, hook):
        def record(trainer, state):
            self.calls.append((hook, state.epoch))
            if hook == "on_validation_end":
                assert state.row["epoch"] == state.epoch + 1
                assert state.result.history[-1] is state.row
                assert "accuracy" in state.val_metrics

        return record


def test_hooks_run_in_order_every_epoch(tmp_path):
    recorder = Recorder()
    _, result, _ = fit(tmp_path, callbacks=[recorder], epochs=2)
    per_epoch = ["on_epoch_start", "on_train_epoch_end", "on_validation_end", "on_epoch_end"]
    expected = [("on_fit_start", 0)]
    for epoch in range(2):
        expected += [(hook, epoch) for hook in per_epoch]
    expected += [("teardown", 1), ("on_fit_end", 1)]
    assert recorder.calls == expected
    assert list(result.history[0]) == [
        "epoch", "train_loss", "val_accuracy", "val_loss", "lr", "trainable_params", "seconds"
    ]  # fmt: skip


def test_teardown_runs_when_training_fails(tmp_path):
    class Boom(Callback):
        torn_down = False

        def on_train_epoch_end(self, trainer, state):
            raise RuntimeError("boom")

        def teardown(self, trainer, state):
            Boom.torn_down = True

    with pytest.raises(RuntimeError, match="boom"):
        fit(tmp_path, callbacks=[Boom()])
    assert Boom.torn_down


class Killed(BaseException):
    pass


class KillAfter(Callback):
    """Stops the process-like run right after ``epoch``'s checkpoints are written (user
    callbacks run after the built-in ones)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, state):
        if state.epoch + 1 == self.epoch:
            raise Killed


@pytest.mark.parametrize("patience", [0, 1])
def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(tmp_path, patience):
    straight_model, straight, _ = fit(tmp_path / "a", epochs=4, patience=patience)
    with pytest.raises(Killed):
        fit(tmp_path / "b", epochs=4, patience=patience, callbacks=[KillAfter(2)])
    assert json.loads((tmp_path / "b/checkpoints/last.json").read_text())["epoch"] == 2
    resumed_model, resumed, _ = fit(tmp_path / "b", epochs=4, patience=patience, resume=True)
    assert without_seconds(resumed.history) == without_seconds(straight.history)
    assert (resumed.best_epoch, resumed.best_score, resumed.stopped_early) == (
        straight.best_epoch,
        straight.best_score,
        straight.stopped_early,
    )
    for key, value in straight_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    for tag in ("best", "last"):
        a = load_file(str(tmp_path / f"a/checkpoints/{tag}.safetensors"))
        b = load_file(str(tmp_path / f"b/checkpoints/{tag}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_duck_typed_task_trains_exactly_like_the_task_value(tmp_path):
    class Duck:
        monitor, monitor_mode = "accuracy", "max"

        def training_step(self, model, batch):
            return training_step(model, batch)

        def predict_step(self, model, batch):
            return predict_step(model, batch)

        def metrics(self, outputs, split):
            return metrics(outputs, split)

    _, duck, trainer = fit(tmp_path / "duck", task=Duck())
    _, value, _ = fit(tmp_path / "value", task=TASK)
    assert isinstance(trainer.task, Task) and trainer.task.monitor == "accuracy"
    assert without_seconds(duck.history) == without_seconds(value.history)
    assert as_task(TASK) is TASK


def test_a_replaced_training_step_is_the_only_difference(tmp_path):
    calls = []

    def counted(model, batch):
        calls.append(len(batch[0]))
        return training_step(model, batch)

    variant = dataclasses.replace(TASK, training_step=counted)
    assert (variant.predict_step, variant.metrics, variant.monitor) == (
        TASK.predict_step,
        TASK.metrics,
        TASK.monitor,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        variant.monitor = "loss"  # type: ignore[misc]
    _, replaced, _ = fit(tmp_path / "r", task=variant, epochs=1, precise_bn_below_steps=0)
    _, plain, _ = fit(tmp_path / "p", task=TASK, epochs=1, precise_bn_below_steps=0)
    assert sum(calls) == len(TRAIN)
    assert without_seconds(replaced.history) == without_seconds(plain.history)


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    # a flat metric and a flat loss: nothing after epoch 1 improves, not even a tie
    flat_metrics = {"accuracy": 0.5, "loss": 1.0}
    flat = dataclasses.replace(TASK, metrics=lambda outputs, split: flat_metrics)
    model, result, _ = fit(tmp_path, task=flat, epochs=5, patience=2)
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1
    assert json.loads((tmp_path / "checkpoints/best.json").read_text())["epoch"] == 1
    best = load_file(str(tmp_path / "checkpoints/best.safetensors"))
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())


def test_save_checkpoint_writes_weights_meta_and_the_epoch_of_progress(tmp_path):
    _, _, trainer = fit(tmp_path / "run", epochs=1)
    model = TinyModel()
    progress = {"epoch": 0, "bad_epochs": 0, "best_epoch": -1, "best_score": None,
                "stopped_early": False, "seconds": 0.5, "history": []}  # fmt: skip
    trainer.save_checkpoint("proto", model, progress, meta={"strategy": "prototypes"})
    with safe_open(str(tmp_path / "run/checkpoints/proto.safetensors"), "pt") as fh:
        meta = json.loads(fh.metadata()["tl"])
        assert set(fh.keys()) == set(model.state_dict())
    assert meta == {"plugin": "tiny", "epoch": 0, "strategy": "prototypes"}
    assert trainer.store.progress("proto") == progress
    assert not (tmp_path / "run/checkpoints/proto.state.pt").exists()


class _Plugin:
    monitor, monitor_mode = "auroc", "max"

    def training_step(self, model, batch):
        return torch.tensor(1.5)

    def predict_step(self, model, batch):
        return {"p": 1}

    def metrics(self, outputs, data, split):
        return {"auroc": 0.9, "data": data, "split": split, "n": len(outputs)}


def test_plugin_task_binds_the_plugin_to_its_data():
    plugin = _Plugin()
    task = plugin_task(plugin, "DATA")
    assert task.training_step(None, None) == 1.5 and task.predict_step(None, None) == {"p": 1}
    assert task.metrics([1, 2], "val") == {"auroc": 0.9, "data": "DATA", "split": "val", "n": 2}
    assert (task.monitor, task.monitor_mode) == ("auroc", "max")


def test_pretrain_as_task_fills_what_the_pretrain_task_leaves_out():
    from tl.core.pretrain import PretrainTask

    plugin = _Plugin()
    bare = pretrain_as_task(PretrainTask(model=None, train=[]), plugin)
    assert float(bare.training_step(None, None)) == 1.5
    assert float(bare.predict_step(None, None)["loss"]) == 1.5
    assert bare.metrics([{"loss": 1.0}], "val") == {}
    assert (bare.monitor, bare.monitor_mode) == ("loss", "min")
    own = PretrainTask(
        model=None,
        train=[],
        training_step=lambda model, batch: torch.tensor(2.0),
        metrics=lambda outputs: {"top1": len(outputs)},
        monitor="top1",
        monitor_mode="max",
    )
    task = pretrain_as_task(own, plugin)
    assert float(task.predict_step(None, None)["loss"]) == 2.0
    assert task.metrics([1, 2, 3], "val") == {"top1": 3}
    assert (task.monitor, task.monitor_mode) == ("top1", "max")


def test_the_training_loss_is_checked_each_batch(tmp_path):
    nan = dataclasses.replace(TASK, training_step=lambda model, batch: torch.tensor(math.nan))
    from tl.core import DataError

    with pytest.raises(DataError, match="training loss became nan"):
        fit(tmp_path, task=nan)


class _SignalAtLastValidation(Callback):
    def on_validation_end(self, trainer, state) -> None:
        if state.epoch + 1 == trainer.config.epochs:
            signal.raise_signal(signal.SIGTERM)  # no training batch is left to notice it


main_thread_only = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers live in the main thread",
)


@main_thread_only
def test_a_signal_in_the_last_epochs_validation_stops_the_run(tmp_path):
    with pytest.raises(Interrupted, match="SIGTERM after the last epoch; checkpoint of epoch 3"):
        fit(tmp_path / "r", callbacks=[_SignalAtLastValidation()], checkpoint_every=3600)
    progress = json.loads((tmp_path / "r/checkpoints/last.json").read_text())
    assert progress["epoch"] == 3 and len(progress["history"]) == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the handler is handed back"


@main_thread_only
def test_outside_training_a_signal_stops_the_run_at_once(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    reached = []
    with pytest.raises(Interrupted) as stopped, stop_the_run(tmp_path):
        signal.raise_signal(signal.SIGTERM)
        reached.append(True)
    assert not reached and stopped.value.exit_code == 143
    assert (
        "interrupted by SIGTERM" in stopped.value.line() and str(tmp_path) in stopped.value.line()
    )
    assert signal.getsignal(signal.SIGTERM) is before
