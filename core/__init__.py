"""tl.core — the transfer engine's public API. Plugins use only what is re-exported here.

Light names (errors, plugin protocol, ONNX runtime, file helpers, metrics) import without
torch, so ``tl predict`` runs where torch is absent. Names that need torch are resolved
lazily on first access (PEP 562), which keeps ``import tl.core`` torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import Config, RunConfig, option
from .errors import ConfigError, DataError, ExportError, PluginError, TLError, WeightsError
from .fileio import atomic_path, file_sha256, write_json_atomic, write_text_atomic
from .inference import Batches, InputBatch, Skipped
from .option_types import FRACTION, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, FiniteRange
from .plugin import API_VERSION, DemoGuide, ExportSpec, Fitted, Plugin, ReportSection, TLData
from .runtime import OnnxModel, load_onnx_model
from .tables import check_column_types, iter_table, name_list, read_table, require_column
from .weights_file import plugin_weights_metadata, read_weights_metadata

__version__ = "0.1.0"

# name -> submodule; imported on first attribute access because these pull in torch
_LAZY = {
    "BackboneSpec": "backbones",
    "create_backbone": "backbones",
    "check_model_name": "backbones",
    "load_tl_weights": "backbones",
    "ClassifierModel": "models",
    "seed_everything": "seeding",
    "PretrainTask": "pretrain",
    "image_pretrain_task": "image_pretrain",
    "BatchAugment": "image_pretrain",
    "to_device": "trainer",
    "StrategyPlan": "strategies",
    "FitContext": "strategies",
    "register_strategy": "strategies",
    "build_plan": "strategies",
    "classification_metrics": "metrics",
    "expected_calibration_error": "metrics",
    "fit_temperature": "calibration",
    "softmax": "calibration",
    "sigmoid": "calibration",
    "choose_threshold": "metrics",
    "classification_report_markdown": "metrics",
    "data_config": "backbones",
    "plot_image_grid": "plots",
    "plot_confusion_matrix": "plots",
    "plot_roc_curves": "plots",
    "plot_pr_curves": "plots",
    "plot_history": "plots",
    "grad_cam": "gradcam",
    "ProgressReporter": "progress",
    "Throughput": "progress",
    "Callback": "callbacks",
    "FitState": "callbacks",
    "ComposedExportSpec": "export",
    "input_entry": "export",
}

__all__ = [
    "API_VERSION",
    "Batches",
    "Config",
    "ConfigError",
    "DataError",
    "DemoGuide",
    "ExportError",
    "ExportSpec",
    "Fitted",
    "FRACTION",
    "InputBatch",
    "FiniteRange",
    "NON_NEGATIVE",
    "OPEN_FRACTION",
    "POSITIVE",
    "OnnxModel",
    "Plugin",
    "PluginError",
    "RunConfig",
    "ReportSection",
    "Skipped",
    "TLData",
    "TLError",
    "WeightsError",
    "atomic_path",
    "file_sha256",
    "check_column_types",
    "iter_table",
    "load_onnx_model",
    "option",
    "name_list",
    "plugin_weights_metadata",
    "read_table",
    "read_weights_metadata",
    "require_column",
    "write_json_atomic",
    "write_text_atomic",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tl.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
