"""`tl run driving`: 2D object detection for road scenes.

Importing this module needs no torch; the training half (the plugin's ``[train]`` extra) is
imported inside the methods that train, so `tl predict` / `tl evaluate` run with
onnxruntime alone. Nothing here keeps state: how a detector post-processes its detections
is part of that model (`Detector.nms`), and the test PR curves travel in the `Fitted` value.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tl.core import (
    Config,
    DemoGuide,
    ExportSpec,
    Fitted,
    OnnxModel,
    Plugin,
    PluginError,
    ReportSection,
    TLData,
)

from .options import DrivingOptions, DrivingPredictOptions, DrivingPretrainOptions, NmsSettings

#: what `tl run driving` / `tl pretrain driving` import beyond the runtime's dependencies
TRAIN_MODULES = ("torch", "torchvision", "timm", "torchmetrics", "matplotlib")


def require_train_extra() -> None:
    """A one-line error naming the extra to install when a training dependency is missing."""
    missing = []
    for name in TRAIN_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError, AttributeError):  # e.g. sys.modules[name] is None
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise PluginError(
            f"training a driving model needs {', '.join(missing)} (the plugin's [train] extra)",
            "tl-driving",
            "pip install 'tl-driving[train]' (tl predict / tl evaluate work without it)",
        )


def _level_points(images: Any) -> tuple[Any, Any]:
    from .model import cached_level_points

    height, width = images.shape[-2:]
    return cached_level_points(int(height), int(width), images.device)


class DrivingPlugin(Plugin):
    name = "driving"
    version = "0.1.0"
    description = "2D object detection for driving scenes (FCOS head, ONNX with NMS)"
    task = "detection"
    default_backbone = "resnet18"
    monitor = "map50"
    monitor_mode = "max"
    #: measured on the demo (README): a detector learns from optimizer steps, and its small
    #: validation splits make early stopping stop at noise; the best epoch is still kept
    #: full fine-tuning also with pretrained weights: the measured day → night recipe
    defaults = {"batch_size": 8, "lr": 2e-3, "epochs": 15, "patience": 0, "strategy": "full"}
    options_type = DrivingOptions
    #: a detector with a BatchNorm backbone: no visual prompts, class prototypes, classifier
    #: attacks, label smoothing or dropout before a head; LoRA untested
    option_groups = frozenset({"batchnorm"})
    pretrain_options_type = DrivingPretrainOptions
    predict_options_type = DrivingPredictOptions
    item_noun = "images"
    item_column = "file_name"

    # ---------------------------------------------------------------- data
    def search_space(self, options: Config) -> dict[str, Any]:
        """`tl tune`: LR, weight decay, letterbox width and FPN/head width; with pretrained
        weights the strategy (the detector has no dropout or label smoothing)."""
        space = super().search_space(options)
        space["image_size"] = {"type": "categorical", "choices": [256, 320, 416, 512]}
        space["head_channels"] = {"type": "categorical", "choices": [32, 64, 128]}
        return space

    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        from .demo import write_demo

        return write_demo(Path(out_dir), size, seed)

    def demo_guide(self, root: Path) -> DemoGuide:
        from .demo_guide import guide

        return guide(Path(root))

    def load(self, path: Path, options: Config) -> TLData:
        require_train_extra()
        from .data import load_detection_data

        return load_detection_data(Path(path), options)

    # --------------------------------------------------------------- model
    def build_model(self, spec: Any, data: TLData, options: Config) -> Any:
        """The detector, with this run's NMS settings on it (``tl pretrain``: the defaults)."""
        from .model import build_detector

        nms = NmsSettings.from_options(options)
        depth = int(options.get("head_depth", 2))
        return build_detector(spec, len(data.labels), int(options["head_channels"]), nms, depth)

    def training_step(self, model: Any, batch: Any) -> Any:
        from .loss import detection_loss

        images, targets = batch
        return detection_loss(model(images), targets, *_level_points(images))["loss"]

    def predict_step(self, model: Any, batch: Any) -> Any:
        from .loss import detection_loss
        from .postprocess import DetectorWithNms

        images, targets = batch
        outputs = model(images)
        loss = detection_loss(outputs, targets, *_level_points(images))["loss"]
        post = DetectorWithNms(model, tuple(images.shape[-2:]))
        detections = post.postprocess(*(o.float() for o in outputs))
        return {"detections": detections, "targets": targets, "loss": loss}

    def metrics(self, outputs: list[Any], data: TLData, split: str) -> dict[str, Any]:
        from .evaluation import detection_metrics

        metrics, _ = detection_metrics(outputs, data.labels)
        if outputs and "loss" in outputs[0]:
            metrics["loss"] = float(sum(float(o["loss"]) for o in outputs) / len(outputs))
        return metrics

    def finalize(
        self, model: Any, data: TLData, outputs: dict[str, list[Any]], options: Config
    ) -> Fitted:
        """`tl predict`'s score threshold from validation (best F1 at IoU 0.5, into the ONNX
        metadata); the torchvision baseline (``--baseline``); the test PR curves."""
        from .evaluation import detection_metrics, f1_threshold

        _, curves = detection_metrics(outputs["test"], data.labels)
        chosen = f1_threshold(outputs["val"])
        export = {
            "predict_score_threshold": chosen["threshold"],
            "predict_score_threshold_rule": "best F1 at IoU 0.5 on the validation split",
        }
        metrics: dict[str, Any] = {"val_f1_at_threshold": chosen}
        if options.get("baseline"):
            metrics["baseline"] = self._baseline(model, data, options)
        return Fitted(metrics=metrics, export=export, artifacts={"curves": curves})

    def _baseline(self, model: Any, data: TLData, options: Config) -> dict[str, Any]:
        from tl.core import ProgressReporter

        from .baseline import baseline_for, initial_backbone_state

        ProgressReporter().log(
            "training the torchvision FCOS baseline on the same backbone and split "
            "(--no-baseline skips it)"
        )
        return dict(
            baseline_for(
                data,
                options,
                lambda: initial_backbone_state(self, data, options),
                model.nms.as_dict(),
                next(model.parameters()).device,
            )
        )

    def predictions(self, outputs: list[Any], data: TLData, fitted: Fitted) -> Any:
        from .training import test_predictions

        return test_predictions(outputs, data, fitted.export.get("predict_score_threshold"))

    # ------------------------------------------------------------- weights
    def weights_metadata(self, model: Any, data: TLData) -> dict[str, Any]:
        return {"labels": list(data.labels), "canvas": list(data.info.get("canvas", ()))}

    def adapt_weights(
        self, state_dict: dict[str, Any], source_meta: dict[str, Any], model: Any, data: TLData
    ) -> dict[str, Any]:
        from .backbone_weights import architecture, to_feature_backbone
        from .model import feature_indices
        from .training import adapt_class_rows

        name = architecture(model)
        if name is not None:
            state_dict = to_feature_backbone(state_dict, model, name, feature_indices(name))
        return adapt_class_rows(state_dict, source_meta, model, data.labels)

    # -------------------------------------------------------------- export
    def export_spec(self, model: Any, data: TLData, fitted: Fitted, run_dir: Path) -> ExportSpec:
        """The detector with its NMS (the settings recorded in the metadata)."""
        from .training import build_export_spec

        return build_export_spec(model, data)

    # ------------------------------------------------------------- runtime (no torch)
    def read_batches(
        self,
        model: OnnxModel,
        path: Path,
        options: Mapping[str, Any],
        batch_size: int,
        labelled: bool = False,
    ) -> Any:
        from .runtime import read_batches

        return read_batches(model, Path(path), options, batch_size, labelled)

    def decode(
        self, model: OnnxModel, batch: Any, outputs: dict[str, Any], options: Mapping[str, Any]
    ) -> Any:
        from .runtime import decode

        return decode(model, batch, outputs, options)

    def score(
        self, model: OnnxModel, rows: Any, extras: list[Any], options: Mapping[str, Any]
    ) -> dict[str, Any]:
        from .runtime import score

        return score(model, rows, extras, options)

    # -------------------------------------------------------------- report
    def report(
        self, run_dir: Path, metrics: dict[str, Any], data: TLData, model: Any, fitted: Fitted
    ) -> list[ReportSection]:
        from .report import report_sections

        curves = fitted.artifacts.get("curves")
        return report_sections(Path(run_dir), metrics, data, model, curves)

    # ------------------------------------------------------------ pretrain
    def pretrain_task(self, spec: Any, path: Path, options: Config) -> Any:
        """SimCLR on unlabelled images, or supervised detection on a labelled source domain
        (e.g. the day scenes); ``--method auto`` picks by whether ``path`` has labels."""
        require_train_extra()
        from .pretrain import resolve_method, simclr_task

        if resolve_method(Path(path), options["method"]) == "simclr":
            return simclr_task(spec, Path(path), options)
        return self._detection_pretrain_task(spec, Path(path), options)

    def _detection_pretrain_task(self, spec: Any, path: Path, options: Config) -> Any:
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
            method="supervised detection",
            metadata=self.weights_metadata(model, data),
            info=data.describe(),
        )
