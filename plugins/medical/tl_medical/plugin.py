"""The medical imaging plugin: X-ray/CT/photo classification from PNG/JPEG/TIFF/BMP/DICOM.

Import-light on purpose: torch is imported only inside the methods that train, so
``tl predict`` works where torch is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl.core import (
    Batches,
    Config,
    DemoGuide,
    ExportSpec,
    Fitted,
    InputBatch,
    OnnxModel,
    Plugin,
    PluginError,
    ReportSection,
    TLData,
)

from .options import MedicalOptions, MedicalPredictOptions, MedicalPretrainOptions

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def _version() -> str:
    try:
        return metadata.version("tl-medical")
    except metadata.PackageNotFoundError:
        return "0"


class MedicalPlugin(Plugin):
    name = "medical"
    version = _version()
    description = "X-ray/CT/photo classification from PNG/JPEG/TIFF/BMP/DICOM (binary, multi-class, multi-label)"
    task = "classification"
    default_backbone = "resnet18"
    monitor = "auroc"
    monitor_mode = "max"
    options_type = MedicalOptions
    pretrain_options_type = MedicalPretrainOptions
    predict_options_type = MedicalPredictOptions

    # ----------------------------------------------------------------- data
    def search_space(self, options: Config) -> dict[str, Any]:
        """`tl tune`: the core's space (LR, weight decay, dropout, label smoothing, and with
        pretrained weights the strategy, llrd's layer decay, LoRA's rank) plus augmentation
        on/off."""
        space = super().search_space(options)
        space["augment"] = {"type": "categorical", "choices": [True, False]}
        return space

    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        from .demo import write_demo

        return write_demo(Path(out_dir), size=size, seed=seed)

    def demo_guide(self, root: Path) -> DemoGuide:
        from .demo_guide import guide

        return guide(Path(root))

    def load(self, path: Path, options: Config) -> TLData:
        from .loading import load_dataset

        return load_dataset(
            path,
            image_size=options["image_size"],
            window=options["window"],
            channels=options["channels"],
            val_fraction=options["val_fraction"],
            test_fraction=options["test_fraction"],
            seed=options["seed"],
            skip_bad=options["skip_bad"],
            augment=options["augment"],
        )

    # ---------------------------------------------------------------- model
    def build_model(self, spec: Any, data: Any, options: Config) -> Any:
        """A timm backbone and a linear head; the model carries its own loss (`model_loss`)."""
        from tl.core import ClassifierModel, create_backbone, data_config

        from .loss import ImageLoss, attach_loss

        backbone = create_backbone(
            spec, image_size=data.image_size, num_classes=0, in_chans=data.in_chans
        )
        config = data_config(backbone, data.image_size, data.in_chans)
        model = ClassifierModel(
            backbone, len(data.labels), float(options["dropout"]), config["mean"], config["std"]
        )
        model.data_config = config
        attach_loss(
            model, ImageLoss(data.multilabel, data.class_weights, options["label_smoothing"])
        )
        return model

    def model_loss(self, model: Any) -> Any:
        """``loss(logits, targets)`` of ``model`` (class weights, label smoothing), also
        through DDP / torch.compile / the feature cache's head-only model."""
        from .loss import model_loss

        return model_loss(model)

    def loss(self, outputs: Any, targets: Any) -> Any:
        """Not available without the model: each model has its own loss (`model_loss`)."""
        raise PluginError(
            "the medical loss belongs to each model (class weights, label smoothing)",
            "MedicalPlugin.loss",
            "call plugin.model_loss(model)(outputs, targets)",
        )

    def training_step(self, model: Any, batch: Any) -> Any:
        images, targets = batch
        return self.model_loss(model)(model(images), targets)

    def predict_step(self, model: Any, batch: Any) -> Any:
        images, targets = batch
        logits = model(images)
        return {
            "logits": logits,
            "targets": targets,
            "loss": self.model_loss(model)(logits, targets),
        }

    def metrics(self, outputs: list[Any], data: Any, split: str) -> dict[str, Any]:
        from .fitting import split_metrics

        return split_metrics(outputs, data.labels, data.multilabel, per_class=split != "val")

    def finalize(
        self, model: Any, data: Any, outputs: dict[str, list[Any]], options: Config
    ) -> Fitted:
        """Temperature scaling and the binary threshold, both fitted on validation only."""
        from .fitting import fit_calibration

        return fit_calibration(outputs, data.labels, data.multilabel, options["target_sensitivity"])

    def predictions(self, outputs: list[Any], data: Any, fitted: Fitted) -> pd.DataFrame:
        from .fitting import gather
        from .runtime import prediction_frame

        _, targets = gather(outputs)
        frame = prediction_frame(
            data.items["test"],
            fitted.artifacts["test_probs"],
            data.labels,
            data.multilabel,
            fitted.export["threshold"],
        )
        if data.multilabel:
            truth = [
                "|".join(n for n, t in zip(data.labels, row, strict=True) if t) for row in targets
            ]
        else:
            truth = [data.labels[t] for t in targets]
        frame.insert(1, "true", truth)
        return frame

    # --------------------------------------------------------------- export
    def export_spec(self, model: Any, data: Any, fitted: Fitted, run_dir: Path) -> ExportSpec:
        """uint8 pixels in; normalisation, temperature and softmax/sigmoid in the graph (the
        fitted temperature and threshold reach the metadata through ``fitted.export``)."""
        from .export import ExportModule, export_metadata, real_batches

        module = ExportModule(model, float(fitted.export["temperature"]), data.multilabel)
        return ExportSpec(
            module=module,
            batches=real_batches(data.test, batch_size=16, max_batches=4),
            input_names=["image"],
            output_names=["logits", "probabilities"],
            dynamic_axes={
                "image": {0: "batch"},
                "logits": {0: "batch"},
                "probabilities": {0: "batch"},
            },
            compare=["probabilities"],
            agreement_output="probabilities",
            metadata=export_metadata(data, model),
        )

    # ------------------------------------------------------- runtime (no torch)
    item_noun = "images"

    def read_batches(
        self,
        model: OnnxModel,
        path: Path,
        options: Mapping[str, Any],
        batch_size: int,
        labelled: bool = False,
    ) -> Batches:
        """Images of a file, a folder (recursive) or a CSV with a ``path`` column; labelled
        (``tl evaluate``): the training layouts (class folders or a manifest)."""
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

        return decode(model, batch, outputs)

    def score(
        self, model: OnnxModel, rows: pd.DataFrame, extras: list[Any], options: Mapping[str, Any]
    ) -> dict[str, Any]:
        from .runtime import score

        return score(model, rows)

    # ------------------------------------------------------------- pretrain
    def pretrain_task(self, spec: Any, path: Path, options: Config) -> Any:
        """SimCLR on unlabelled scans (``--method simclr``) or supervised on a labelled source."""
        from .pretrain import pretrain_task

        return pretrain_task(spec, Path(path), options)

    # --------------------------------------------------------------- report
    def report(
        self, run_dir: Path, metrics: dict[str, Any], data: Any, model: Any, fitted: Fitted
    ) -> list[ReportSection]:
        from .reporting import report_sections

        return report_sections(run_dir, metrics, data, model, fitted)
