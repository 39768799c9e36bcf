"""tl's metadata inside a ``.safetensors`` weights file — read without torch.

Every checkpoint, ``tl pretrain`` output and ``--weights`` file keeps a JSON block under the
key ``tl`` (plugin, backbone, labels, and the plugin's own ``weights_meta``: schema,
vocabulary …). This is the one reader of it, with one error policy: a file that is not
safetensors, or whose block is not JSON, is a `WeightsError`; a file without a block is {}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import WeightsError

TL_WEIGHTS_KEY = "tl"


def read_safetensors_metadata(path: Path) -> dict[str, Any]:
    """The file's metadata, with the ``tl`` block parsed."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = handle.metadata() or {}
    except Exception as exc:
        raise WeightsError(
            "the weights file is corrupt or not safetensors", path, "re-create it or pick another"
        ) from exc
    if TL_WEIGHTS_KEY in raw:
        try:
            return {TL_WEIGHTS_KEY: json.loads(raw[TL_WEIGHTS_KEY])}
        except json.JSONDecodeError as exc:
            raise WeightsError(
                "the weights file's tl metadata is not JSON", path, "re-create it"
            ) from exc
    return dict(raw)


def read_weights_metadata(path: Path) -> dict[str, Any]:
    """The ``tl`` block of a weights file ({} for plain safetensors)."""
    meta = read_safetensors_metadata(Path(path)).get(TL_WEIGHTS_KEY, {})
    return meta if isinstance(meta, dict) else {}


def plugin_weights_metadata(meta_or_path: dict[str, Any] | Path) -> dict[str, Any]:
    """The plugin's own part of a tl block (``Plugin.weights_metadata`` as saved), from the
    block or from a weights file; {} when there is none."""
    meta = meta_or_path if isinstance(meta_or_path, dict) else read_weights_metadata(meta_or_path)
    own = meta.get("weights_meta")
    return own if isinstance(own, dict) else {}
