"""The recsys plugin: sequential recommendation (SASRec) that transfers across markets.

Importing this module pulls in no torch; the training half imports it inside methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tl.core import ConfigError, FiniteRange, Plugin, ReportSection

from . import __version__
from .dataset import RecsysData, load_data
from .ranking import PROTOCOL, rank_metrics

if TYPE_CHECKING:  # pragma: no cover
    import click
    import pandas as pd
    from tl.core import ExportSpec, OnnxModel, TLData

BACKBONES = ("sasrec",)
ARCH_OPTIONS = {"d_model": 64, "layers": 2, "heads": 2, "max_len": 50}
FULL_SOFTMAX_MAX_ITEMS = 20_000
EXPORT_K = 100


def _data_options() -> list[click.Option]:
    import click

    return [
        click.Option(["--user-column"], default=None, help="User id column (default user_id)."),
        click.Option(["--item-column"], default=None, help="Item id column (default item_id)."),
        click.Option(["--time-column"], default=None, help="Timestamp column (default timestamp, if present)."),
        click.Option(["--rating-column"], default=None, help="Rating column (default rating, if present)."),
        click.Option(["--min-rating"], type=FiniteRange(), default=None, help="Keep interactions rated at least this."),
        click.Option(["--max-len"], type=click.IntRange(min=1), default=None, help="Longest history the encoder reads (default 50)."),
        click.Option(["--d-model"], type=click.IntRange(min=1), default=None, help="Embedding width (default 64)."),
        click.Option(["--layers"], type=click.IntRange(min=1), default=None, help="Transformer blocks (default 2)."),
        click.Option(["--heads"], type=click.IntRange(min=1), default=None, help="Attention heads (default 2)."),
        click.Option(
            ["--loss"], type=click.Choice(["auto", "full", "sampled"]), default="auto",
            help="Full softmax over the catalogue, or sampled softmax (auto: sampled above 20k items).",
        ),
        click.Option(["--negatives"], type=click.IntRange(min=1), default=256, help="Negatives per batch for --loss sampled."),
    ]  # fmt: skip


class RecsysPlugin(Plugin):
    name = "recsys"
    version = __version__
    description = "Sequential recommendation (SASRec): next items from a user's history"
    task = "next-item recommendation"
    default_backbone = "sasrec"
    monitor = "ndcg@10"
    monitor_mode = "max"

    # ----------------------------------------------------------------- CLI
    def cli_options(self) -> list[click.Option]:
        import click

        return [
            *_data_options(),
            click.Option(
                ["--first-k"], type=click.IntRange(min=1), default=None,
                help="Use only each user's first K interactions (adapting to new users).",
            ),
            click.Option(["--top-k"], type=click.IntRange(min=1), default=EXPORT_K, help="Items the ONNX model returns."),
        ]  # fmt: skip

    def pretrain_options(self) -> list[click.Option]:
        return _data_options()

    def predict_options(self) -> list[click.Option]:
        """Options of ``tl predict`` / ``tl evaluate`` for recsys models."""
        import click

        return [
            click.Option(
                ["--top-k"],
                type=click.IntRange(min=1),
                default=10,
                help="Recommendations per user.",
            ),
            click.Option(["--user-column"], default=None, help="User id column (default user_id)."),
            click.Option(["--item-column"], default=None, help="Item id column (default item_id)."),
            click.Option(
                ["--time-column"], default=None, help="Timestamp column (default timestamp)."
            ),
        ]

    # ---------------------------------------------------------------- data
    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        from .demo import write_demo

        return write_demo(Path(out_dir), size, seed)

    def load(self, path: Path, options: dict[str, Any]) -> TLData:
        from .training import collate  # torch: only the training path loads data for batching

        data = load_data(Path(path), options)
        data.collate = collate
        return data

    # --------------------------------------------------------------- model
    def build_model(self, spec: Any, data: TLData, options: dict[str, Any]) -> Any:
        from .model import SASRec, SASRecConfig
        from .transfer import read_source_meta

        if spec.name not in BACKBONES:
            raise ConfigError(
                f"recsys has no backbone '{spec.name}'", "--backbone", "use --backbone sasrec"
            )
        arch = {key: options.get(key) for key in ARCH_OPTIONS}
        weights = getattr(spec, "tl_weights", None)
        source = read_source_meta(weights) if weights is not None else None
        saved = (source or {}).get("sasrec", {})
        saved_keys = {"d_model": "d_model", "layers": "n_layers", "heads": "n_heads"}
        for key, default in ARCH_OPTIONS.items():
            if arch[key] is None:
                arch[key] = saved.get(saved_keys.get(key, key), default)
        assert isinstance(data, RecsysData)
        config = SASRecConfig(
            n_items=data.n_items,
            d_model=int(arch["d_model"]),
            n_layers=int(arch["layers"]),
            n_heads=int(arch["heads"]),
            max_len=int(data.info.get("max_len") or arch["max_len"]),
            dropout=float(options.get("dropout") if options.get("dropout") is not None else 0.2),
        )
        if config.d_model % config.n_heads:
            raise ConfigError(
                "--d-model must be divisible by --heads", "--d-model", "e.g. 64 and 2"
            )
        loss = options.get("loss") or "auto"
        if loss == "auto":
            loss = "full" if data.n_items <= FULL_SOFTMAX_MAX_ITEMS else "sampled"
        return SASRec(config, loss=loss, negatives=int(options.get("negatives") or 256))

    def training_step(self, model: Any, batch: Any) -> Any:
        from .training import training_step

        return training_step(model, batch)

    def predict_step(self, model: Any, batch: Any) -> Any:
        from .training import rank_step

        return rank_step(model, batch)

    def metrics(self, outputs: list[Any], data: TLData, split: str) -> dict[str, Any]:
        ranks = np.concatenate([np.asarray(o["rank"]) for o in outputs]) if outputs else []
        result: dict[str, Any] = dict(rank_metrics(ranks))
        if outputs:
            result["loss"] = float(
                np.mean(np.concatenate([np.asarray(o["loss"]) for o in outputs]))
            )
        if split == "test":
            assert isinstance(data, RecsysData)
            result["protocol"] = PROTOCOL
            result["baseline"] = {"name": "popularity", **data.baseline.get("test", {})}
            result["n_users"] = len(ranks)
        return result

    def predictions(self, outputs: list[Any], data: TLData, extra: dict[str, Any]) -> pd.DataFrame:
        from .predictions import test_predictions

        assert isinstance(data, RecsysData)
        return test_predictions(outputs, data)

    # ------------------------------------------------------------- weights
    def weights_metadata(self, model: Any, data: TLData) -> dict[str, Any]:
        from .transfer import weights_metadata

        assert isinstance(data, RecsysData)
        return weights_metadata(data.vocab, model.config.to_dict())

    def adapt_weights(
        self, state_dict: dict[str, Any], source_meta: dict[str, Any], model: Any, data: TLData
    ) -> dict[str, Any]:
        from .transfer import adapt_state_dict

        assert isinstance(data, RecsysData)
        state, summary = adapt_state_dict(state_dict, source_meta, model.state_dict(), data.vocab)
        model.transfer_summary = summary
        return state

    # -------------------------------------------------------------- export
    def export_spec(self, model: Any, data: TLData, extra: dict[str, Any]) -> ExportSpec:
        from .export import export_spec, write_item_embeddings

        assert isinstance(data, RecsysData)
        run_dir = (extra or {}).get("run_dir")
        if run_dir:
            write_item_embeddings(model, Path(run_dir))
        histories = [data.test[i]["seen"] for i in range(len(data.test))]
        k = min(data.export_k, data.n_items)
        return export_spec(model.eval(), data.vocab, histories, k)

    # ------------------------------------------------------------- runtime
    def predict(self, model: OnnxModel, path: Path, options: dict[str, Any]) -> pd.DataFrame:
        from .runtime import recommend

        return recommend(model, Path(path), options)

    def evaluate(self, model: OnnxModel, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        from .runtime import evaluate_log

        return evaluate_log(model, Path(path), options)

    # -------------------------------------------------------------- report
    def report(
        self, run_dir: Path, metrics: dict[str, Any], data: TLData, model: Any
    ) -> list[ReportSection]:
        from .report import report_sections

        assert isinstance(data, RecsysData)
        return report_sections(Path(run_dir), metrics, data, model)

    # ------------------------------------------------------------ pretrain
    def pretrain_task(self, spec: Any, path: Path, options: dict[str, Any]) -> Any:
        from tl.core import PretrainTask

        data = self.load(Path(path), options)
        model = self.build_model(spec, data, options)
        return PretrainTask(
            model=model,
            train=data.train,
            val=data.val,
            training_step=self.training_step,
            predict_step=self.predict_step,
            metrics=lambda outputs: self.metrics(outputs, data, "val"),
            collate=data.collate,
            monitor=self.monitor,
            monitor_mode=self.monitor_mode,
            method="next-item prediction (SASRec, full catalogue) on the source log",
            metadata=self.weights_metadata(model, data),
            info=data.describe(),
        )
