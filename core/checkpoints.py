"""Checkpoints: model weights in safetensors, training state loadable with weights_only=True.

``checkpoints/{last,best}.safetensors`` hold the model (with tl's JSON metadata);
``last.state.pt`` the optimizer and scheduler state (tensors and numbers only, so
``torch.load(weights_only=True)`` reads it; none after a fit's final epoch);
``{last,best}.json`` the epoch counters and history. Each file is written to a temp name and renamed; the JSON is written last, so a
checkpoint is complete exactly when its JSON names its epoch. When an epoch writes both,
``last.safetensors`` is a hard link of ``best.safetensors`` (the same bytes, written once).

During training the files are written behind the loop (``save(..., background=True)``,
`tl.core.background.OrderedWriter`): the tensors are copied when the epoch ends, written
in order by one thread, and every read of the store waits for the writes before it. A kill
loses at most the checkpoint being written; the previous one stays complete. Saves that
wait while an earlier one is being written are coalesced: when epochs end faster than the
disk takes their files (a linear probe on cached features), or while `write_every`'s
interval has not passed (``--checkpoint-every``), the newest ``best`` and ``last`` are
written next and the ones they replace never are.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .backbones import TL_WEIGHTS_KEY
from .background import OrderedWriter
from .errors import DataError, OutputError
from .fileio import _jsonable, atomic_path
from .snapshots import model_storages, snapshot

LoadFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[list[str], list[str]]]


def state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with storage of its own (safetensors needs that): a
    tensor that already owns its whole storage is used as is, views and tied tensors are
    copied — cloning everything costs a full model copy per checkpoint."""
    model = getattr(model, "module", model)
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        storage = value.untyped_storage()
        whole = value.data_ptr() == storage.data_ptr() and storage.nbytes() == (
            value.numel() * value.element_size()
        )
        if not whole or storage.data_ptr() in seen:
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        out[key] = value
    return out


def save_weights(
    model: nn.Module,
    path: Path,
    meta: dict[str, Any],
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """``state`` (default: the model's state dict) with tl's metadata, atomically."""
    with atomic_path(path) as tmp:
        save_file(
            state if state is not None else state_dict_for_saving(model),
            str(tmp),
            metadata={TL_WEIGHTS_KEY: json.dumps(meta, default=str)},
        )
    return path


def save_backbone(model: nn.Module, path: Path, meta: dict[str, Any]) -> Path:
    """Only the ``backbone.*`` tensors (a `tl pretrain` output)."""
    state = {k: v for k, v in state_dict_for_saving(model).items() if k.startswith("backbone.")}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={TL_WEIGHTS_KEY: json.dumps(meta, default=str)})
    return path


def load_weights_into(model: nn.Module, path: Path, load: LoadFn | None = None) -> None:
    """Load a checkpoint; every tensor must fit. ``load(model, state)`` → (missing, unexpected)
    replaces ``load_state_dict`` for strategies whose checkpoints are not the model's own
    state dict (`tl.core.strategies.StrategyPlan.load_checkpoint_state`)."""
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise DataError(
            "the checkpoint is corrupt or unreadable", path, "resume from another run or start anew"
        ) from exc
    target = getattr(model, "module", model)
    if load is None:
        missing, unexpected = target.load_state_dict(state, strict=False)
    else:
        missing, unexpected = load(target, state)
    if missing or unexpected:
        raise DataError(
            f"the checkpoint does not fit the model ({len(missing)} missing, {len(unexpected)} unexpected tensors)",
            path,
            "resume with the same plugin, backbone and options as the original run",
        )


def save_training_state(training_state: dict[str, Any], path: Path) -> None:
    """``torch.save`` without the zip records' CRC-32, which costs more CPU than writing
    the optimizer state itself; the atomic rename is what guards against torn files."""
    serialization = torch.serialization
    crc = serialization.get_crc32_options()
    serialization.set_crc32_options(False)
    try:
        torch.save(training_state, path)
    finally:
        serialization.set_crc32_options(crc)


def _replace(queued: dict[str, tuple[Any, ...]], newer: dict[str, tuple[Any, ...]]) -> None:
    """``newer``'s saves in place of ``queued``'s of the same tags, after the others: a
    queued ``best`` without a newer one stays and is still written before ``last``."""
    for tag, args in newer.items():
        queued.pop(tag, None)
        queued[tag] = args


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class CheckpointStore:
    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir) / "checkpoints"
        # at most a tenth of the time writing: short epochs coalesce instead of taking a core
        self._writer = OrderedWriter("tl-checkpoints", max_busy=0.1)
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[Any, ...]] | None = None  # saves no job has taken yet
        self._group: dict[str, tuple[Any, ...]] | None = None

    def path(self, tag: str, suffix: str) -> Path:
        return self.dir / f"{tag}{suffix}"

    def save(
        self,
        tag: str,
        model: nn.Module,
        meta: dict[str, Any],
        progress: dict[str, Any],
        training_state: dict[str, Any] | None = None,
        state: dict[str, torch.Tensor] | None = None,
        weights_from: str | None = None,
        background: bool = False,
    ) -> None:
        """``weights_from``: a tag saved this epoch with the same weights and meta, whose
        weights file this one shares (hard link; a copy where links are unsupported).
        ``background``: copy the tensors now, write them behind the caller (`flush` waits;
        a failed write raises from the next `save`, `check` or `flush`)."""
        tensors = None
        if weights_from is None:
            tensors = state if state is not None else state_dict_for_saving(model)
        meta_text = json.dumps(meta, default=str)
        progress_text = json.dumps(progress, indent=2, default=_jsonable) + "\n"
        if not background:
            self.flush()
            self._write(tag, tensors, meta_text, progress_text, training_state, weights_from)
            return
        self._writer.check()
        live = model_storages(model)
        tensors = snapshot(tensors, live) if tensors is not None else None
        training_state = snapshot(training_state) if training_state is not None else None
        entry = {tag: (tensors, meta_text, progress_text, training_state, weights_from)}
        if self._group is not None:
            _replace(self._group, entry)
        else:
            self._enqueue(entry)

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """The background saves made inside are written by one job, in the order made
        (``best`` then a ``last`` that links it), and coalesced as one: no write of a newer
        ``last`` can come before the ``best`` of its epoch."""
        self._group = {}
        try:
            yield
        finally:
            group, self._group = self._group, None
        if group:
            self._enqueue(group)

    def _enqueue(self, entries: dict[str, tuple[Any, ...]]) -> None:
        with self._lock:
            if self._waiting is not None:  # a job is queued and has not started: it takes these
                _replace(self._waiting, entries)
                return
            self._waiting = dict(entries)
        self._writer.submit(self._write_waiting)

    def _write_waiting(self) -> None:
        with self._lock:
            entries, self._waiting = self._waiting or {}, None
        for tag, args in entries.items():
            self._write(tag, *args)

    def _write(
        self,
        tag: str,
        tensors: dict[str, torch.Tensor] | None,
        meta_text: str,
        progress_text: str,
        training_state: dict[str, Any] | None,
        weights_from: str | None,
    ) -> None:
        # All files go to temp names first and are renamed only when every one is written
        # (ExitStack exits last-in first-out: state, weights, then the JSON that commits the
        # checkpoint), so a full disk or a kill never leaves a mixed or half-written one.
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with contextlib.ExitStack() as stack:
                progress_tmp = stack.enter_context(atomic_path(self.path(tag, ".json")))
                weights_tmp = stack.enter_context(atomic_path(self.path(tag, ".safetensors")))
                if training_state is not None:
                    state_tmp = stack.enter_context(atomic_path(self.path(tag, ".state.pt")))
                    save_training_state(training_state, state_tmp)
                if weights_from is not None:
                    _link_or_copy(self.path(weights_from, ".safetensors"), weights_tmp)
                else:
                    save_file(tensors, str(weights_tmp), metadata={TL_WEIGHTS_KEY: meta_text})
                progress_tmp.write_text(progress_text, encoding="utf-8")
            if training_state is None:  # committed: an older epoch's state is not this one's
                self.path(tag, ".state.pt").unlink(missing_ok=True)
        except OSError as exc:
            kept = self._progress(tag).get("epoch") if self._exists(tag) else None
            raise OutputError(
                f"cannot write the {tag} checkpoint ({exc.strerror or exc}); "
                + (f"the {tag} checkpoint of epoch {kept} is intact" if kept else "none was kept"),
                self.dir,
                "free disk space or make the folder writable, then continue with --resume "
                f"{self.dir.parent}",
            ) from exc

    def write_every(self, seconds: float) -> None:
        """Background writes start at most once per ``seconds``, counted from now; saves made
        in between are coalesced (the newest is written), and reads, `flush` and `close`
        write what waits at once. A hard kill loses at most that much training."""
        self._writer.pace(seconds)

    def check(self) -> None:
        """Raise the error of a background write that failed (cheap: waits for nothing)."""
        self._writer.check()

    def flush(self) -> None:
        """Wait for the background writes; raise the error of one that failed."""
        self._writer.flush()

    def close(self) -> None:
        """`flush` and stop the writer's thread."""
        self._writer.close()

    def exists(self, tag: str) -> bool:
        self.flush()
        return self._exists(tag)

    def _exists(self, tag: str) -> bool:
        return self.path(tag, ".json").exists() and self.path(tag, ".safetensors").exists()

    def progress(self, tag: str) -> dict[str, Any]:
        self.flush()
        return self._progress(tag)

    def _progress(self, tag: str) -> dict[str, Any]:
        try:
            progress = json.loads(self.path(tag, ".json").read_text(encoding="utf-8"))
            valid = (
                isinstance(progress, dict)
                and isinstance(progress.get("epoch"), int)
                and isinstance(progress.get("bad_epochs", 0), int)
                and isinstance(progress.get("best_epoch", -1), int)
                and isinstance(progress.get("history", []), list)
                and all(isinstance(row, dict) for row in progress.get("history", []))
                and isinstance(progress.get("best_score"), (int, float, type(None)))
            )
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(
                "the checkpoint's progress file is missing or corrupt",
                self.path(tag, ".json"),
                "start a new run",
            ) from exc
        if not valid:
            raise DataError(
                "the checkpoint's progress file is not a tl checkpoint (edited?)",
                self.path(tag, ".json"),
                "start a new run",
            )
        return progress

    def training_state(self, tag: str) -> dict[str, Any] | None:
        self.flush()
        path = self.path(tag, ".state.pt")
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(
                "the training state is corrupt or not a tl checkpoint", path, "start a new run"
            ) from exc

    def load_model(self, tag: str, model: nn.Module, load: LoadFn | None = None) -> None:
        self.flush()
        load_weights_into(model, self.path(tag, ".safetensors"), load)
