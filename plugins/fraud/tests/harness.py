"""Drive the plugin through the core's trainer the way `tl run` / `tl pretrain` do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl.core.backbones import BackboneSpec, load_tl_weights
from tl.core.checkpoints import save_backbone
from tl.core.strategies import build_plan
from tl.core.trainer import TrainConfig, Trainer


class PluginTask:
    def __init__(self, plugin, data) -> None:
        self.plugin, self.data = plugin, data
        self.monitor, self.monitor_mode = plugin.monitor, plugin.monitor_mode

    def training_step(self, model, batch):
        return self.plugin.training_step(model, batch)

    def predict_step(self, model, batch):
        return self.plugin.predict_step(model, batch)

    def metrics(self, outputs, split):
        return self.plugin.metrics(outputs, self.data, split)


class PretrainAdapter:
    def __init__(self, task) -> None:
        self.task = task
        self.monitor, self.monitor_mode = task.monitor, task.monitor_mode

    def training_step(self, model, batch):
        return self.task.training_step(model, batch)

    def predict_step(self, model, batch):
        return self.task.predict_step(model, batch)

    def metrics(self, outputs, split):
        return self.task.metrics(outputs)


def config(**overrides: Any) -> TrainConfig:
    base = dict(
        epochs=5, lr=1e-3, weight_decay=1e-4, batch_size=128, patience=0, device="cpu", warmup=0.0
    )
    return TrainConfig(**{**base, **overrides})


def pretrain(plugin, path: Path, options: dict, out: Path, cfg: TrainConfig) -> Path:
    task = plugin.pretrain_task(BackboneSpec("ft_transformer"), path, options)
    plan = build_plan(task.model, "full", cfg.lr, cfg.weight_decay)
    trainer = Trainer(cfg, PretrainAdapter(task), out, tensorboard=False)
    trainer.fit(task.model, plan, task.train, task.val, task.collate)
    return save_backbone(task.model, out / "backbone.safetensors", task.metadata)


def finetune(
    plugin,
    data,
    options: dict,
    out: Path,
    cfg: TrainConfig,
    weights: str = "none",
    strategy: str = "full",
):
    """Build (and load ``weights`` into) the model, train, finalize; return (model, test metrics)."""
    spec = BackboneSpec(options.get("backbone") or plugin.default_backbone, weights=weights)
    model = plugin.build_model(spec, data, options)
    if spec.tl_weights is not None:
        load_tl_weights(
            model, spec.tl_weights, lambda s, m: plugin.adapt_weights(s, m, model, data)
        )
    plan = build_plan(model, strategy, cfg.lr, cfg.weight_decay)
    trainer = Trainer(
        cfg,
        PluginTask(plugin, data),
        out,
        tensorboard=False,
        weights_meta=lambda: plugin.weights_metadata(model, data),
    )
    trainer.fit(model, plan, data.train, data.val, data.collate)
    val = trainer.collect(model, data.val, data.collate)
    test = trainer.collect(model, data.test, data.collate)
    extra = plugin.finalize(model, data, {"val": val, "test": test})
    return model, plugin.metrics(test, data, "test"), extra
