"""The recsys plugin: sequential recommendation (SASRec) that transfers across markets.

Importing this module pulls in no torch; the training half imports it inside methods.
After `load` nothing here changes the plugin or the data: the transfer notes of
``adapt_weights`` live on the model, and `finalize` returns the popularity baseline and the
export's ``k`` as a `tl.core.Fitted`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tl.core import ConfigError, Fitted, Plugin, ReportSection

from . import __version__
from .dataset import RecsysData, load_data, popularity_baseline
from .options import ARCH_DEFAULTS, RecsysLogOptions, RecsysOptions, RecsysPredictOptions
from .ranking import PROTOCOL, rank_metrics

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from tl.core import (
        Config,
        DemoGuide,
        ExportSpec,
        InputBatch,
        OnnxModel,
        Skipped,
        TLData,
    )

BACKBONES = ("sasrec",)
#: option name → `SASRecConfig` field saved in a weights file's metadata
SAVED_ARCH = {"d_model": "d_model", "layers": "n_layers", "heads": "n_heads"}
FULL_SOFTMAX_MAX_ITEMS = 20_000


class RecsysPlugin(Plugin):
    name = "recsys"
    version = __version__
    description = "Sequential recommendation (SASRec): next items from a user's history"
    task = "next-item recommendation"
    default_backbone = "sasrec"
    monitor = "ndcg@10"
    monitor_mode = "max"
    hub_weights = False
    #: dropout only: no visual prompts, prototypes, attacks, LoRA, label smoothing (a ranking
    #: loss), BatchNorm or feature caching for these models
    option_groups = frozenset({"dropout"})
    #: full fine-tuning also with pretrained weights: the recipe the README measured
    defaults = {"dropout": 0.2, "strategy": "full"}
    options_type = RecsysOptions
    pretrain_options_type = RecsysLogOptions
    predict_options_type = RecsysPredictOptions
    item_noun = "users"
    #: the output column naming an item (a user); not the ``item_column`` option (log items)
    item_column = "user_id"

    # ---------------------------------------------------------------- data
    def search_space(self, options: Config) -> dict[str, Any]:
        """`tl tune`: LR, weight decay, dropout; from scratch also the encoder's width and
        depth (pretrained weights fix them); with weights the strategy."""
        space = super().search_space(options)
        if str(options["weights"]) == "none":
            space["d_model"] = {"type": "categorical", "choices": [32, 64, 128]}
            space["layers"] = {"type": "int", "low": 1, "high": 3}
        elif "strategy" in space:
            space["strategy"]["choices"] = ["linear", "full", "llrd"]
        return space

    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        from .demo import write_demo

        return write_demo(Path(out_dir), size, seed)

    def demo_guide(self, root: Path) -> DemoGuide:
        from .demo_guide import guide

        return guide(Path(root))

    def load(self, path: Path, options: Config) -> TLData:
        from .training import collate  # torch: only the training path loads data for batching

        data = load_data(Path(path), options)
        data.collate = collate
        return data

    # --------------------------------------------------------------- model
    def build_model(self, spec: Any, data: TLData, options: Config) -> Any:
        from .model import SASRec, SASRecConfig
        from .transfer import read_source_meta

        if spec.name not in BACKBONES:
            raise ConfigError(
                f"recsys has no backbone '{spec.name}'", "--backbone", "use --backbone sasrec"
            )
        assert isinstance(data, RecsysData)
        weights = getattr(spec, "tl_weights", None)
        source = read_source_meta(weights) if weights is not None else None
        saved = (source or {}).get("sasrec", {})
        arch = {
            key: options[key] if options[key] is not None else saved.get(SAVED_ARCH[key], default)
            for key, default in ARCH_DEFAULTS.items()
        }
        config = SASRecConfig(
            n_items=data.n_items,
            d_model=int(arch["d_model"]),
            n_layers=int(arch["layers"]),
            n_heads=int(arch["heads"]),
            max_len=int(data.info["max_len"]),
            dropout=float(options["dropout"]),
        )
        if config.d_model % config.n_heads:
            raise ConfigError(
                "--d-model must be divisible by --heads", "--d-model", "e.g. 64 and 2"
            )
        loss = options["loss"]
        if loss == "auto":
            loss = "full" if data.n_items <= FULL_SOFTMAX_MAX_ITEMS else "sampled"
        return SASRec(config, loss=loss, negatives=int(options["negatives"]))

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
            result["protocol"] = PROTOCOL
            result["n_users"] = len(ranks)
        return result

    def finalize(
        self, model: Any, data: TLData, outputs: dict[str, list[Any]], options: Config
    ) -> Fitted:
        """The popularity baseline next to the test metrics, the export's ``k`` and this
        model's transfer notes (for the report)."""
        assert isinstance(data, RecsysData)
        return Fitted(
            metrics={"baseline": popularity_baseline(data, "test")},
            export={"k": min(int(options["top_k"]), data.n_items)},
            artifacts={"transfer": getattr(model, "transfer_summary", None)},
        )

    def predictions(self, outputs: list[Any], data: TLData, fitted: Fitted) -> pd.DataFrame:
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
    def export_spec(self, model: Any, data: TLData, fitted: Fitted, run_dir: Path) -> ExportSpec:
        from .export import export_spec, write_item_embeddings

        assert isinstance(data, RecsysData)
        write_item_embeddings(model, Path(run_dir))
        histories = [data.test[i]["seen"] for i in range(len(data.test))]
        return export_spec(model.eval(), data.vocab, histories, int(fitted.export["k"]))

    # ------------------------------------------------------------- runtime (no torch)
    def read_batches(
        self,
        model: OnnxModel,
        path: Path,
        options: Mapping[str, Any],
        batch_size: int,
        labelled: bool = False,
    ) -> Iterable[InputBatch | Skipped]:
        from .runtime import read_batches

        return read_batches(model, Path(path), options, batch_size, labelled)

    def decode(
        self,
        model: OnnxModel,
        batch: InputBatch,
        outputs: dict[str, Any],
        options: Mapping[str, Any],
    ) -> pd.DataFrame:
        from .runtime import decode

        return decode(model, batch, outputs, options)

    def score(
        self, model: OnnxModel, rows: pd.DataFrame, extras: list[Any], options: Mapping[str, Any]
    ) -> dict[str, Any]:
        from .runtime import score

        return score(model, rows, extras)

    # -------------------------------------------------------------- report
    def report(
        self, run_dir: Path, metrics: dict[str, Any], data: TLData, model: Any, fitted: Fitted
    ) -> list[ReportSection]:
        from .report import report_sections

        assert isinstance(data, RecsysData)
        return report_sections(Path(run_dir), metrics, data, model, fitted)

    # ------------------------------------------------------------ pretrain
    def pretrain_task(self, spec: Any, path: Path, options: Config) -> Any:
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
