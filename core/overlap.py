"""Did the evaluation data take part in training? Matched by content, not by name.

At the end of `tl run` the core reads the run's own data once more through the plugin's
runtime reader (`read_batches`, exactly what `tl evaluate` reads) and keeps a fingerprint of
every training and validation item's model input (``fingerprints.parquet`` in the run
directory). `tl evaluate` fingerprints what it reads the same way and counts the matches, so a
metric measured on training items is flagged even when the files were copied or renamed.
Never imports torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .runtime import OnnxModel

FILE = "fingerprints.parquet"
SPLITS = ("train", "val")


def row_fingerprints(inputs: Mapping[str, np.ndarray]) -> list[str]:
    """One digest per row (axis 0) over every input, in name order: equal rows, equal digests."""
    import numpy as np

    names = sorted(inputs)
    arrays = [np.asarray(inputs[name]) for name in names]
    n = len(arrays[0]) if arrays else 0
    digests = []
    for row in range(n):
        digest = hashlib.blake2b(digest_size=12)
        for name, array in zip(names, arrays, strict=True):
            value = array[row]
            digest.update(name.encode())
            if array.dtype.kind in "OUS":
                digest.update("\x1f".join(map(str, np.ravel(value))).encode("utf-8", "replace"))
            else:
                digest.update(str(array.dtype).encode())
                digest.update(np.ascontiguousarray(value).tobytes())
        digests.append(digest.hexdigest())
    return digests


def record_fingerprints(
    plugin: Any, model: OnnxModel, data: Path, options: Mapping[str, Any], splits: Any
) -> Path | None:
    """Write ``fingerprints.parquet`` (``fingerprint``, ``split``) beside ``model``: the
    training and validation items of ``splits`` (its ``item`` and ``split`` columns) as the
    runtime reads them from ``data``. None when the plugin has no runtime reader."""
    import pandas as pd

    from .fileio import atomic_path

    if not hasattr(plugin, "read_batches"):
        return None
    split_of = _split_by_item(splits)
    rows: list[tuple[str, str]] = []
    batch_size = int(options.get("batch_size") or 64)
    for entry in plugin.read_batches(model, Path(data), options, batch_size, labelled=True):
        if not hasattr(entry, "inputs"):  # a Skipped item
            continue
        items = entry.items[plugin.item_column].astype(str).tolist()
        for item, print_ in zip(items, row_fingerprints(entry.inputs), strict=True):
            split = split_of.get(item)
            if split in SPLITS:
                rows.append((print_, split))
    frame = pd.DataFrame(rows, columns=["fingerprint", "split"]).drop_duplicates()
    target = Path(model.path).parent / FILE
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return target


def _split_by_item(splits: Any) -> dict[str, str]:
    """Item → its split; an item in several splits (a user's history) counts as training."""
    order = {"train": 0, "val": 1, "test": 2}
    best: dict[str, str] = {}
    for item, split in zip(splits["item"].astype(str), splits["split"].astype(str), strict=True):
        if item not in best or order.get(split, 3) < order.get(best[item], 3):
            best[item] = split
    return best


class OverlapCounter:
    """Counts evaluated items whose fingerprint is a training or validation item's."""

    def __init__(self, model: OnnxModel) -> None:
        self.known: dict[str, str] = {}
        self.counts = dict.fromkeys(SPLITS, 0)
        self.seen = 0
        path = Path(model.path).parent / FILE
        self.available = path.is_file()
        if self.available:
            import pandas as pd

            frame = pd.read_parquet(path)
            self.known = dict(zip(frame["fingerprint"], frame["split"], strict=True))

    def add(self, inputs: Mapping[str, np.ndarray]) -> None:
        if not self.available:
            return
        for print_ in row_fingerprints(inputs):
            self.seen += 1
            split = self.known.get(print_)
            if split is not None:
                self.counts[split] += 1

    def summary(self) -> dict[str, int] | None:
        """``{"train": n, "val": m, "evaluated": k}``, or None without a fingerprint file."""
        return {**self.counts, "evaluated": self.seen} if self.available else None

    def warning(self) -> str | None:
        """A one-line warning when some evaluated items were trained or validated on."""
        if not self.available or not any(self.counts.values()):
            return None
        parts = [f"{n} in its {name} split" for name, n in self.counts.items() if n]
        return (
            f"warning: of the {self.seen} evaluated items, {' and '.join(parts)} "
            "(matched by content) — these metrics are not a held-out estimate; evaluate on "
            "data the run never saw (its test split is listed in splits.csv)"
        )
