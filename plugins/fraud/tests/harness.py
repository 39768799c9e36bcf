"""Drive the plugin through the core's trainer the way `tl run` / `tl pretrain` do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl.core import Config, Fitted, RunConfig, seed_everything
from tl.core.backbones import BackboneSpec
from tl.core.checkpoints import save_backbone
from tl.core.config import resolve_config
from tl.core.run import build_and_load
from tl.core.run_config import train_config
from tl.core.strategies import build_plan
from tl.core.task import plugin_task, pretrain_as_task
from tl.core.trainer import Trainer
from tl_fraud.options import FraudPretrainOptions

TRAIN = dict(epochs=5, lr=1e-3, weight_decay=1e-4, batch_size=128, patience=0, device="cpu",
             warmup=0.0)  # fmt: skip


def run_config(plugin, path: Path, **values: Any) -> Config:
    """``tl run fraud --data path`` with ``values`` as flags (small trainer settings)."""
    return resolve_config(plugin, {"data": str(path), **TRAIN, **values})


def pretrain_config(path: Path, **values: Any) -> Config:
    """``tl pretrain fraud --data path`` with ``values`` as flags."""
    names = set(FraudPretrainOptions.__dataclass_fields__)
    core = {k: v for k, v in {**TRAIN, **values}.items() if k not in names}
    own = FraudPretrainOptions(**{k: v for k, v in values.items() if k in names})
    return Config(RunConfig(data=str(path), **core), own, command="pretrain")


def pretrain(plugin, options: Config, out: Path) -> Path:
    seed_everything(int(options["seed"]))  # the result must not depend on the tests before
    task = plugin.pretrain_task(BackboneSpec("ft_transformer"), Path(options["data"]), options)
    plan = build_plan(task.model, options)
    trainer = Trainer(train_config(options), pretrain_as_task(task, plugin), out, tensorboard=False)
    trainer.fit(task.model, plan, task.train, task.val, task.collate)
    return save_backbone(task.model, out / "backbone.safetensors", task.metadata)


def finetune(plugin, data, options: Config, out: Path) -> tuple[Any, Fitted, dict[str, list[Any]]]:
    """Build (and load ``options["weights"]`` into) the model, train it, finalize; return
    (model, fitted, the val/test outputs)."""
    seed_everything(int(options["seed"]))  # as `tl run` does: init independent of test order
    model, plan, _ = build_and_load(plugin, data, options, options["weights"])
    trainer = Trainer(
        train_config(options),
        plugin_task(plugin, data),
        out,
        tensorboard=False,
        weights_meta=lambda: plugin.weights_metadata(model, data),
    )
    trainer.fit(model, plan, data.train, data.val, data.collate)
    outputs = {
        "val": trainer.collect(model, data.val, data.collate),
        "test": trainer.collect(model, data.test, data.collate),
    }
    return model, plugin.finalize(model, data, outputs, options), outputs
