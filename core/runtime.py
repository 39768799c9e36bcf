"""ONNX runtime: load a tl model and run it with onnxruntime. Never imports torch.

The CUDA provider is only requested when a CUDA driver with at least one device is really
present; asking onnxruntime-gpu for CUDA on a machine without one prints a screen of
errors, which users read as failure.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, ExportError

MODEL_FILENAME = "model.onnx"
METADATA_KEY = "tl"


@lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when the CUDA driver loads and reports at least one device (no torch needed)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return False
        except AttributeError:
            return False
        return count.value > 0
    return False


def select_providers(device: str = "auto") -> list[str]:
    """onnxruntime providers for ``device`` (auto|cpu|cuda), best first."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    if device == "cpu" or (device == "auto" and not cuda_available()):
        return ["CPUExecutionProvider"]
    if device == "cuda" and not cuda_available():
        raise DataError(
            "CUDA was requested but no GPU is available", "onnxruntime", "use --device cpu or auto"
        )
    chosen = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if os.environ.get("TL_ORT_TENSORRT", "0") != "1" and "TensorrtExecutionProvider" in chosen:
        chosen.remove("TensorrtExecutionProvider")  # opt-in: engine builds take minutes
    return chosen + ["CPUExecutionProvider"]


def resolve_model_path(path: str | os.PathLike[str]) -> Path:
    """A run directory or a .onnx file → the .onnx file. A run directory whose manifest
    says the run failed (or is still running, with no model yet) is refused with why."""
    path = Path(path)
    if path.is_dir():
        _check_run_status(path)
        path = path / MODEL_FILENAME
    if not path.exists():
        raise DataError(
            "no ONNX model found",
            path,
            "pass a run directory made by `tl run` or a model.onnx file",
        )
    return path


def _check_run_status(run_dir: Path) -> None:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no (readable) manifest: the model file decides
    status = manifest.get("status") if isinstance(manifest, dict) else None
    if status == "failed":
        error = str(manifest.get("error") or "").strip().removeprefix("error: ")
        raise DataError(
            f"this run failed: {error}" if error else "this run failed",
            run_dir,
            f"rerun it (or --resume {run_dir})",
        )
    if status == "running" and not (run_dir / MODEL_FILENAME).exists():
        raise DataError(
            "this run has not finished",
            run_dir,
            "wait for `tl run` to finish (or --resume it if it was stopped)",
        )


@dataclass
class OnnxModel:
    """An onnxruntime session with tl's metadata (labels, input spec, preprocessing …)."""

    session: Any
    meta: dict[str, Any]
    path: Path

    @property
    def plugin(self) -> str:
        return str(self.meta.get("plugin", ""))

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def on_gpu(self) -> bool:
        providers = self.providers
        return bool(providers) and providers[0] in (
            "CUDAExecutionProvider",
            "TensorrtExecutionProvider",
        )

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; returns outputs by name. On a GPU provider the batch goes through
        IO binding: inputs are copied to the device once, outputs allocated there and copied
        back together, instead of per-call staging by ``session.run``."""
        if self.on_gpu:
            return self._run_bound(feeds)
        outputs = self.session.run(None, feeds)
        return dict(zip(self.output_names, outputs, strict=True))

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", 0)
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda", 0)
        self.session.run_with_iobinding(binding)
        outputs = binding.copy_outputs_to_cpu()
        return dict(zip(self.output_names, outputs, strict=True))

    def run_batches(
        self, batches: Iterable[dict[str, np.ndarray]]
    ) -> Iterator[dict[str, np.ndarray]]:
        for feeds in batches:
            yield self.run(feeds)


def read_metadata(model_proto_path: Path) -> dict[str, Any]:
    import onnx

    try:
        model = onnx.load(str(model_proto_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ExportError(
            "the ONNX file is corrupt or not an ONNX model",
            model_proto_path,
            "re-export it with `tl run` (or restore the original file)",
        ) from exc
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(
            "the ONNX model has no tl metadata",
            model_proto_path,
            "use a model exported by `tl run`",
        )
    try:
        meta = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ExportError(
            "the model's tl metadata is not valid JSON", model_proto_path, "re-export the model"
        ) from exc
    if not isinstance(meta, dict):
        raise ExportError("the model's tl metadata is not an object", model_proto_path, "re-export")
    return meta


def load_onnx_model(
    path: str | os.PathLike[str], device: str = "auto", threads: int | None = None
) -> OnnxModel:
    """Load ``path`` (run dir or .onnx) with the best available provider."""
    import onnxruntime as ort

    model_path = resolve_model_path(path)
    meta = read_metadata(model_path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=select_providers(device)
        )
    except Exception as exc:
        raise ExportError(
            f"onnxruntime cannot load the model: {str(exc).splitlines()[0][:200]}",
            model_path,
            "re-export the model with `tl run`",
        ) from exc
    return OnnxModel(session=session, meta=meta, path=model_path)


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
