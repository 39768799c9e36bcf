"""`tl pretrain`: train the plugin's `PretrainTask` and write ``backbone.safetensors``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .backbones import BackboneSpec, load_tl_weights
from .fileio import write_json_atomic, write_text_atomic
from .plugin import Plugin
from .progress import ProgressReporter
from .run_config import resolve_run_config, train_config
from .rundir import data_fingerprint, make_run_dir, run_status, write_config, write_manifest
from .seeding import seed_everything
from .strategies import build_plan
from .task import pretrain_as_task
from .tracking import track_run
from .trainer import Trainer


def pretrain_plugin(
    plugin: Plugin, options: dict[str, Any], reporter: ProgressReporter | None = None
) -> Path:
    """The whole `tl pretrain`; returns the run directory (made once the data has loaded)."""
    from .checkpoints import save_backbone

    config = resolve_run_config(plugin, options, command="pretrain")
    seed_everything(int(config["seed"]))
    spec = BackboneSpec(name=config["backbone"], weights=config["weights"], options=config)
    task = plugin.pretrain_task(spec, Path(config["data"]), config)
    run_dir = make_run_dir(Path(config["out"]), f"pretrain-{plugin.name}")
    write_config(run_dir, plugin, config)
    reporter = reporter or ProgressReporter()
    reporter.log_file = run_dir / "log.txt"
    with run_status(run_dir, plugin, config), track_run(plugin, config, run_dir, reporter,
                                                        "pretrain") as tracked:  # fmt: skip
        if spec.tl_weights is not None:
            load_tl_weights(task.model, spec.tl_weights)
        plan = build_plan(task.model, config.replace(strategy="full"))
        trainer = Trainer(
            train_config(config, **task.train_overrides),
            pretrain_as_task(task, plugin),
            run_dir,
            reporter,
            weights_meta=lambda: {
                "plugin": plugin.name,
                "backbone": config["backbone"],
                "weights_meta": task.metadata,
            },
            callbacks=tracked,
        )
        val = task.val if task.val is not None and len(task.val) else task.train
        fit = trainer.fit(task.model, plan, task.train, val, task.collate)
        write_text_atomic(run_dir / "history.csv", pd.DataFrame(fit.history).to_csv(index=False))
        meta = {
            "plugin": plugin.name,
            "backbone": config["backbone"],
            "method": task.method,
            "weights_meta": task.metadata,
        }
        save_backbone(task.model, run_dir / "backbone.safetensors", meta)
        write_json_atomic(
            run_dir / "pretrain.json",
            {
                **meta,
                "train_seconds": round(fit.seconds, 2),
                "epochs_run": len(fit.history),
                "history": fit.history,
                **task.info,
            },
        )
        write_manifest(run_dir, plugin, config, {"data": data_fingerprint(Path(config["data"]))})
    return run_dir
