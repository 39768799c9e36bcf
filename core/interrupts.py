"""Stopping a run cleanly on SIGINT/SIGTERM: the trainer finishes the batch it is in and
raises `tl.core.errors.Interrupted` (a one-line error naming the kept checkpoint and the
``--resume`` command). The last complete epoch's checkpoint is never cut in half."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from .checkpoints import CheckpointStore
from .errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While entered (in the main thread), SIGINT/SIGTERM set a flag that `check` turns
    into `Interrupted` between batches; a second signal stops right away."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # a second Ctrl-C: stop right now
            raise KeyboardInterrupt
        self.signum = signum

    def check(self, epoch: int, store: CheckpointStore, run_dir: Path) -> None:
        """Raise `Interrupted` if a signal came (``epoch`` 0-based, the unfinished one)."""
        if self.signum is None:
            return
        name = signal.Signals(self.signum).name
        kept = store.progress("last")["epoch"] if store.exists("last") else None
        raise Interrupted(
            self.signum,
            f"interrupted by {name} in epoch {epoch + 1}; "
            + (f"checkpoint of epoch {kept} kept" if kept else "no epoch was complete yet"),
            run_dir,
            f"continue with --resume {run_dir}"
            + (" (the unfinished epoch is redone, so the result matches an uninterrupted run)"),
        )
