"""The fraud plugin: what `tl run/pretrain/predict/evaluate/demo fraud` call.

Importing this module pulls in no torch; the training methods import it lazily. What a
trained model's run fits (threshold, test scores, baseline) is returned as a `Fitted`
(`fitting`), never kept on the plugin or the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl.core import ConfigError, ExportSpec, Fitted, Plugin, ReportSection, TLData

from . import __version__
from .fitting import fit, gather, predictions, split_metrics
from .metrics import ThresholdRule, choose_threshold, fraud_metrics
from .options import DEFAULTS, FraudOptions, FraudPredictOptions, FraudPretrainOptions
from .prepare import PreparedTable, frame_split_table, prepare
from .runtime import ROW

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from tl.core import Config, DemoGuide, OnnxModel

BACKBONES = ("ft_transformer",)


@dataclass
class FraudData(TLData):
    """`TLData` plus what every model of the run reads (the encoded table, the threshold
    rule, the seed). Set by `FraudPlugin.load` and never changed afterwards: what a model's
    training fits travels in its `Fitted`, what it is lives on the model."""

    prepared: PreparedTable | None = None
    rule: ThresholdRule = field(default_factory=ThresholdRule)
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        """The report's Data section: file, rows, target, split rule and counts, warnings,
        then the type of every column (the long part) last."""
        info = dict(self.info)
        columns = info.pop("columns", None)
        return {**info, "columns": columns} if columns is not None else info


class FraudPlugin(Plugin):
    name = "fraud"
    version = __version__
    description = (
        "Transaction fraud: FT-Transformer that transfers between tables, vs gradient boosting"
    )
    task = "binary-fraud"
    default_backbone = "ft_transformer"
    monitor = "average_precision"
    monitor_mode = "max"
    hub_weights = False
    #: dropout only: no visual prompts, prototypes, attacks, LoRA, label smoothing (a BCE or
    #: focal loss), BatchNorm (LayerNorm blocks) or feature caching for these models
    option_groups = frozenset({"dropout"})
    defaults = DEFAULTS
    options_type = FraudOptions
    pretrain_options_type = FraudPretrainOptions
    predict_options_type = FraudPredictOptions
    item_noun = "rows"
    item_column = ROW

    # ---------------------------------------------------------------- data
    def search_space(self, options: Config) -> dict[str, Any]:
        """`tl tune`: LR, weight decay, head dropout and the loss; from scratch also the
        token width and depth (pretrained weights fix them); with weights the strategy."""
        space = super().search_space(options)
        space["loss"] = {"type": "categorical", "choices": ["weighted", "focal", "plain"]}
        if str(options["weights"]) == "none":
            space["d_token"] = {"type": "categorical", "choices": [32, 64, 128]}
            space["n_blocks"] = {"type": "int", "low": 1, "high": 4}
        elif "strategy" in space:
            space["strategy"]["choices"] = ["linear", "partial:1", "full", "llrd"]
        return space

    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        from .demo import write_demo

        return write_demo(Path(out_dir), size, seed)

    def demo_guide(self, root: Path) -> DemoGuide:
        from .demo_guide import guide

        return guide(Path(root))

    def load(self, path: Path, options: Config) -> FraudData:
        from .data import TableDataset, collate_rows

        prepared = prepare(Path(path), options, labelled=True)
        datasets = [TableDataset(*prepared.part(name)) for name in ("train", "val", "test")]
        return FraudData(
            *datasets,
            splits=frame_split_table(prepared),
            labels=["legit", "fraud"],
            task=self.task,
            info=prepared.info,
            collate=collate_rows,
            prepared=prepared,
            rule=_rule(options.plugin),
            seed=int(options["seed"]),
        )

    # --------------------------------------------------------------- model
    def build_model(self, spec: Any, data: FraudData, options: Config) -> Any:
        _check_backbone(spec.name)
        train_labels = data.prepared.part("train")[2]
        return _fraud_model(
            data.prepared.schema,
            _architecture(spec, options),
            options["dropout"],
            options.plugin.loss,
            train_labels,
        )

    def training_step(self, model: Any, batch: dict[str, Any]) -> Any:
        return model.loss(model(batch["numeric"], batch["categorical"]), batch["target"])

    def predict_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        logits = model(batch["numeric"], batch["categorical"])
        return {
            "score": logits.float().sigmoid(),
            "target": batch["target"],
            "loss": model.loss(logits, batch["target"]),
        }

    def metrics(self, outputs: list[Any], data: FraudData, split: str) -> dict[str, Any]:
        """Monitoring metrics (validation: at a threshold chosen on validation itself); the
        final test metrics, at the validation threshold, come from `finalize`."""
        return split_metrics(outputs, data.rule, split)

    def finalize(
        self, model: Any, data: FraudData, outputs: dict[str, list[Any]], options: Config
    ) -> Fitted:
        """Threshold from validation; test metrics at it, side by side with the baseline."""
        return fit(model, data, outputs)

    def predictions(self, outputs: list[Any], data: FraudData, fitted: Fitted) -> pd.DataFrame:
        rows = data.prepared.rows[data.prepared.split == "test"]
        return predictions(outputs, rows, fitted.export["threshold"])

    # ------------------------------------------------------------- weights
    def weights_metadata(self, model: Any, data: FraudData) -> dict[str, Any]:
        return {
            "plugin": self.name,
            "schema": data.prepared.schema.to_dict(),
            "architecture": model.arch.to_dict(),
            "target": data.info.get("target"),
            "positive_label": data.info.get("positive_label"),
        }

    def adapt_weights(
        self, state_dict: dict[str, Any], source_meta: dict[str, Any], model: Any, data: FraudData
    ) -> dict[str, Any]:
        """Move the source table's per-column weights to this table's columns by name; what
        moved is noted on ``model.transfer`` (metrics.json and the report show it)."""
        from .schema import TableSchema
        from .transfer import adapt_state_dict

        meta = _fraud_meta(source_meta)
        if "schema" not in meta:
            return state_dict
        source = TableSchema.from_dict(meta["schema"])
        state, model.transfer = adapt_state_dict(
            state_dict, source, data.prepared.schema, model.state_dict()
        )
        return state

    # -------------------------------------------------------------- export
    def export_spec(self, model: Any, data: FraudData, fitted: Fitted, run_dir: Path) -> ExportSpec:
        from .export import export_spec

        return export_spec(model, data, fitted)

    # ------------------------------------------------------------- runtime (no torch)
    def read_batches(
        self,
        model: OnnxModel,
        path: Path,
        options: Mapping[str, Any],
        batch_size: int,
        labelled: bool = False,
    ) -> Any:
        """The table read `runtime.CHUNK_ROWS` rows at a time and scored `runtime.BATCH_ROWS`
        rows a call (``batch_size``, an image-sized default, is not used for rows)."""
        from .runtime import read_batches

        return read_batches(model, Path(path), options, labelled)

    def decode(
        self, model: OnnxModel, batch: Any, outputs: dict[str, Any], options: Mapping[str, Any]
    ) -> pd.DataFrame:
        from .runtime import decode

        return decode(model, batch, outputs)

    def score(
        self, model: OnnxModel, rows: pd.DataFrame, extras: list[Any], options: Mapping[str, Any]
    ) -> dict[str, Any]:
        from .runtime import score

        return score(model, rows, extras)

    # -------------------------------------------------------------- report
    def report(
        self, run_dir: Path, metrics: dict[str, Any], data: FraudData, model: Any, fitted: Fitted
    ) -> list[ReportSection]:
        from .report import sections

        return sections(Path(run_dir), metrics, fitted)

    # ------------------------------------------------------------ pretrain
    def pretrain_task(self, spec: Any, path: Path, options: Config) -> Any:
        from tl.core import PretrainTask

        from .data import TableDataset, collate_rows

        _check_backbone(spec.name)
        supervised = bool(options["target"])
        prepared = prepare(Path(path), {**options, "test_fraction": 0.0}, labelled=supervised)
        arch = _architecture(spec, options)
        metadata = {
            "plugin": self.name,
            "schema": prepared.schema.to_dict(),
            "architecture": arch.to_dict(),
        }
        train, val = (TableDataset(*prepared.part(name)) for name in ("train", "val"))
        if supervised:
            return self._supervised_pretrain(prepared, arch, options, train, val, metadata)
        from .pretrain import SelfSupervisedModel, ssl_metrics, ssl_predict_step, ssl_training_step

        mode = options["ssl"]
        return PretrainTask(
            model=SelfSupervisedModel(prepared.schema, arch, mode),
            train=train,
            val=val,
            training_step=ssl_training_step,
            predict_step=ssl_predict_step,
            metrics=ssl_metrics,
            collate=collate_rows,
            method=f"self-supervised ({mode})",
            metadata={**metadata, "method": f"ssl-{mode}"},
            info=prepared.info,
        )

    def _supervised_pretrain(self, prepared, arch, options, train, val, metadata) -> Any:
        """``tl pretrain --target``: the fraud model itself (its head is dropped with the
        weights); `tl pretrain` has no threshold costs or --loss/--dropout, so they are the
        run defaults."""
        from tl.core import PretrainTask

        from .data import collate_rows

        run = FraudOptions()
        train_labels = prepared.part("train")[2]
        model = _fraud_model(prepared.schema, arch, DEFAULTS["dropout"], run.loss, train_labels)
        rule = _rule(run)

        def metrics(outputs: list[Any]) -> dict[str, Any]:
            scores, targets = gather(outputs)
            return fraud_metrics(scores, targets, choose_threshold(scores, targets, rule))

        return PretrainTask(
            model=model,
            train=train,
            val=val,
            training_step=self.training_step,
            predict_step=self.predict_step,
            metrics=metrics,
            collate=collate_rows,
            monitor="average_precision",
            monitor_mode="max",
            method="supervised",
            metadata={**metadata, "method": "supervised", "target": options["target"]},
            info=prepared.info,
        )


# ------------------------------------------------------------------ helpers
def _check_backbone(name: str | None) -> None:
    if name and name not in BACKBONES:
        raise ConfigError(
            f"unknown fraud backbone '{name}'", "--backbone", f"use {', '.join(BACKBONES)}"
        )


def _rule(options: FraudOptions) -> ThresholdRule:
    return ThresholdRule(options.cost_fp, options.cost_fn, options.target_recall)


def _fraud_model(schema: Any, arch: Any, dropout: float, loss: str, train_labels: Any) -> Any:
    from .loss import FraudLoss, balanced_pos_weight
    from .model import FraudModel

    model = FraudModel(schema, arch, dropout=float(dropout))
    model.loss = FraudLoss(loss, balanced_pos_weight(train_labels))
    return model


def _architecture(spec: Any, options: Mapping[str, Any]) -> Any:
    """Sizes from the pretrained weights' metadata when there are any, then the flags."""
    from .model import Architecture

    base: dict[str, Any] = {}
    weights = getattr(spec, "tl_weights", None)
    if weights is not None:
        base = dict(_fraud_meta(_weights_meta(weights)).get("architecture", {}))
    for key in ("d_token", "n_blocks", "n_heads"):
        if options[key] is not None:
            base[key] = int(options[key])
    return Architecture.from_dict(base)


def _weights_meta(path: Path) -> dict[str, Any]:
    from tl.core import read_weights_metadata

    return read_weights_metadata(path)


def _fraud_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The plugin's part of a weights file's metadata (the core nests it in ``weights_meta``)."""
    return meta.get("weights_meta", meta) if isinstance(meta.get("weights_meta"), dict) else meta
