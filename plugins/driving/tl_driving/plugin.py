"""`tl run driving`: 2D object detection for road scenes.

Importing this module needs no torch; the training half is imported inside the methods
that train, so `tl predict` / `tl evaluate` run with onnxruntime alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from tl.core import POSITIVE, ExportSpec, FiniteRange, Plugin, ReportSection, TLData

DEFAULTS = {"score_threshold": 0.05, "nms_iou": 0.6, "max_det": 100, "head_channels": 64}


def _setting(options: dict[str, Any], key: str) -> Any:
    value = options.get(key)
    return DEFAULTS[key] if value is None else value


class DrivingPlugin(Plugin):
    name = "driving"
    version = "0.1.0"
    description = "2D object detection for driving scenes (FCOS head, ONNX with NMS)"
    task = "detection"
    default_backbone = "resnet18"
    monitor = "map50"
    monitor_mode = "max"

    def __init__(self) -> None:
        self._points: dict[tuple[Any, ...], Any] = {}
        self._curves: dict[str, Any] | None = None
        self._export: dict[str, Any] = {}

    # ----------------------------------------------------------------- CLI
    def cli_options(self) -> list[click.Option]:
        return [
            click.Option(
                ["--image-size"],
                type=click.IntRange(min=32),
                help="Letterbox width in pixels, a multiple of 32 (default: median image width).",
            ),
            click.Option(
                ["--max-det"],
                type=click.IntRange(min=1),
                help="Detections kept per image (default 100).",
            ),
            click.Option(
                ["--score-threshold"],
                type=FiniteRange(0, 1),
                help="Lowest score kept (default 0.05).",
            ),
            click.Option(
                ["--nms-iou"],
                type=FiniteRange(0, 1, min_open=True),
                help="IoU above which NMS suppresses (0.6).",
            ),
            click.Option(
                ["--head-channels"], type=click.IntRange(min=1), help="FPN/head width (default 64)."
            ),
        ]

    def pretrain_options(self) -> list[click.Option]:
        return [
            click.Option(
                ["--method"],
                type=click.Choice(["auto", "simclr", "supervised"]),
                help="simclr: self-supervised on every image under --data (labels ignored); "
                "supervised: detection on a labelled dataset; auto (default): supervised when "
                "--data has labels (YOLO labels/ or data.yaml, COCO JSON, KITTI), else simclr.",
            ),
            click.Option(
                ["--image-size"],
                type=click.IntRange(min=32),
                help="Letterbox width, a multiple of 32; use the same for `tl run`.",
            ),
            click.Option(
                ["--ssl-temperature"], type=POSITIVE, help="simclr: NT-Xent temperature (0.2)."
            ),
            click.Option(
                ["--head-channels"],
                type=click.IntRange(min=1),
                help="supervised: FPN/head width (64).",
            ),
            click.Option(
                ["--skip-bad/--no-skip-bad"], default=None, help="Skip (and count) bad images."
            ),
        ]

    def predict_options(self) -> list[click.Option]:
        return [
            click.Option(
                ["--draw"],
                type=click.Path(path_type=Path),
                help="Also write each image with its boxes into this folder.",
            )
        ]

    # ---------------------------------------------------------------- data
    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        from .demo import write_demo

        return write_demo(Path(out_dir), size, seed)

    def load(self, path: Path, options: dict[str, Any]) -> TLData:
        from .data import load_detection_data

        self._export = {
            "score_threshold": float(_setting(options, "score_threshold")),
            "iou_threshold": float(_setting(options, "nms_iou")),
            "max_det": int(_setting(options, "max_det")),
        }
        return load_detection_data(Path(path), options)

    # --------------------------------------------------------------- model
    def build_model(self, spec: Any, data: TLData, options: dict[str, Any]) -> Any:
        from .model import build_detector

        return build_detector(spec, len(data.labels), int(_setting(options, "head_channels")))

    def _level_points(self, images: Any) -> tuple[Any, Any]:
        from .model import level_points

        key = (*images.shape[-2:], images.device)
        if key not in self._points:
            self._points[key] = level_points(*images.shape[-2:], device=images.device)
        return self._points[key]

    def training_step(self, model: Any, batch: Any) -> Any:
        from .loss import detection_loss

        images, targets = batch
        return detection_loss(model(images), targets, *self._level_points(images))["loss"]

    def predict_step(self, model: Any, batch: Any) -> Any:
        from .loss import detection_loss
        from .postprocess import DetectorWithNms

        images, targets = batch
        outputs = model(images)
        loss = detection_loss(outputs, targets, *self._level_points(images))["loss"]
        post = DetectorWithNms(model, tuple(images.shape[-2:]), **self._export_settings())
        detections = post.postprocess(*(o.float() for o in outputs))
        return {"detections": detections, "targets": targets, "loss": loss}

    def _export_settings(self) -> dict[str, Any]:
        return self._export or {
            "score_threshold": DEFAULTS["score_threshold"],
            "iou_threshold": DEFAULTS["nms_iou"],
            "max_det": DEFAULTS["max_det"],
        }

    def metrics(self, outputs: list[Any], data: TLData, split: str) -> dict[str, Any]:
        from .evaluation import detection_metrics

        metrics, curves = detection_metrics(outputs, data.labels)
        if split == "test":
            self._curves = curves
        if outputs and "loss" in outputs[0]:
            metrics["loss"] = float(sum(float(o["loss"]) for o in outputs) / len(outputs))
        return metrics

    def predictions(self, outputs: list[Any], data: TLData, extra: dict[str, Any]) -> Any:
        from .training import test_predictions

        return test_predictions(outputs, data)

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
    def export_spec(self, model: Any, data: TLData, extra: dict[str, Any]) -> ExportSpec:
        from .training import build_export_spec

        return build_export_spec(model, data, self._export_settings())

    # ------------------------------------------------------------- runtime (no torch)
    def predict(self, model: Any, path: Path, options: dict[str, Any]) -> Any:
        from .runtime import predict

        return predict(model, Path(path), options)

    def evaluate(self, model: Any, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        from .runtime import evaluate

        return evaluate(model, Path(path), options)

    # -------------------------------------------------------------- report
    def report(
        self, run_dir: Path, metrics: dict[str, Any], data: TLData, model: Any
    ) -> list[ReportSection]:
        from .report import report_sections

        return report_sections(
            Path(run_dir), metrics, data, model, self._curves, self._export_settings()
        )

    # ------------------------------------------------------------ pretrain
    def pretrain_task(self, spec: Any, path: Path, options: dict[str, Any]) -> Any:
        """SimCLR on unlabelled images, or supervised detection on a labelled source domain
        (e.g. the day scenes); ``--method auto`` picks by whether ``path`` has labels."""
        from .pretrain import resolve_method, simclr_task

        if resolve_method(Path(path), options.get("method")) == "simclr":
            return simclr_task(spec, Path(path), options)
        return self._detection_pretrain_task(spec, Path(path), options)

    def _detection_pretrain_task(self, spec: Any, path: Path, options: dict[str, Any]) -> Any:
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
