"""The models a server serves: each run directory (or .onnx file) loaded once, with its
plugin, its tensors as the v2 protocol names them, and its batcher."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..registry import load_plugin
from ..runtime import MODEL_FILENAME, OnnxModel, load_onnx_model
from .batching import Batcher, Outputs, Ticket
from .errors import model_failure
from .metrics import ServerMetrics
from .protocol import TensorSpec

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class ServedModel:
    name: str
    model: OnnxModel
    plugin: Any
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batcher: Batcher

    async def infer(self, feeds: Mapping[str, Any], ticket: Ticket | None = None) -> Outputs:
        """The outputs of ``feeds``, through the batcher; onnxruntime refusing the values is
        the client's 400 (a batch that fails is rerun per request, so it is this one's)."""
        try:
            return await self.batcher.submit(feeds, ticket)
        except Exception as exc:
            failure = model_failure(exc)
            if failure is None:
                raise
            raise failure from None

    def metadata(self) -> dict[str, Any]:
        """``GET /v2/models/{name}``: the v2 model metadata, plus tl's (labels, threshold,
        input spec, preprocessing …) under ``tl``."""
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [s.describe() for s in self.inputs],
            "outputs": [s.describe() for s in self.outputs],
            "tl": self.model.meta,
        }

    def config(self) -> dict[str, Any]:
        """``GET /v2/models/{name}/config`` in Triton's shape (batch dimension left out of
        ``dims`` when the model batches)."""
        batched = _batchable(self.inputs, self.outputs)

        def tensor(spec: TensorSpec) -> dict[str, Any]:
            kind = "STRING" if spec.datatype == "BYTES" else spec.datatype
            dims = list(spec.shape[1:] if batched else spec.shape)
            return {"name": spec.name, "data_type": f"TYPE_{kind}", "dims": dims}

        return {
            "name": self.name,
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "max_batch_size": self.batcher.max_batch if batched else 0,
            "input": [tensor(s) for s in self.inputs],
            "output": [tensor(s) for s in self.outputs],
            "dynamic_batching": {
                "max_queue_delay_microseconds": round(self.batcher.max_delay * 1e6)
            },
        }


def _batchable(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> bool:
    """Every tensor has a dynamic first (batch) axis, so requests can be stacked."""
    return all(spec.shape[:1] == (-1,) for spec in (*inputs, *outputs))


def default_name(path: Path) -> str:
    """A run directory's name; ``RUN/model.onnx`` → RUN's; ``RUN/model.int8.onnx`` →
    ``RUN-int8`` (an export variant beside the run's model); any other file: its stem."""
    path = Path(path).resolve()
    if path.is_dir():
        return path.name
    if path.name == MODEL_FILENAME:
        return path.parent.name
    if path.name.startswith("model.") and path.suffix == ".onnx":
        return f"{path.parent.name}-{path.name[len('model.') : -len('.onnx')]}"
    return path.stem


def model_names(paths: Sequence[Path], names: Sequence[str]) -> list[str]:
    """``--name`` values in order, then the default names; checked to be usable in a URL
    and distinct."""
    if len(names) > len(paths):
        raise ConfigError(
            f"{len(names)} --name values for {len(paths)} models",
            "--name",
            "give at most one --name per RUN_DIR, in the same order",
        )
    chosen = [*names, *(default_name(p) for p in paths[len(names) :])]
    seen: set[str] = set()
    for name, path in zip(chosen, paths, strict=True):
        if not NAME.match(name):
            raise ConfigError(
                f"the model name '{name}' cannot be used in a URL",
                path,
                "give it a --name of letters, digits, '.', '_' or '-'",
            )
        if name in seen:
            raise ConfigError(f"two models are named '{name}'", path, "give each a distinct --name")
        seen.add(name)
    return chosen


def load_models(
    paths: Sequence[Path],
    names: Sequence[str],
    *,
    device: str,
    threads: int | None,
    max_batch: int,
    max_delay: float,
    metrics: ServerMetrics,
) -> list[ServedModel]:
    """Every model loaded (and its plugin imported) before the server binds: a bad run
    directory is the usual one-line error, not a server that answers 500."""
    served = []
    for name, path in zip(model_names(paths, names), paths, strict=True):
        model = load_onnx_model(path, device=device, threads=threads)
        plugin = load_plugin(model.plugin)
        try:
            inputs = [TensorSpec.of(node) for node in model.session.get_inputs()]
            outputs = [TensorSpec.of(node) for node in model.session.get_outputs()]
        except ValueError as exc:
            raise ConfigError(str(exc), model.path, "export the model with `tl run`") from None
        batcher = Batcher(
            model.run,
            name=name,
            max_batch=max_batch,
            max_delay=max_delay,
            batchable=_batchable(inputs, outputs),
            observe=metrics.batch_observer(name),
        )
        served.append(ServedModel(name, model, plugin, inputs, outputs, batcher))
    return served
