"""Stopping a run cleanly on SIGINT/SIGTERM: the trainer finishes the batch it is in and
raises `tl.core.errors.Interrupted` (a one-line error naming the kept checkpoint and the
``--resume`` command). The last complete epoch's checkpoint is never cut in half. Outside
the training loop (`stop_the_run`: learning-rate search, export, evaluation) the run stops
at once with the same error, SIGTERM like Ctrl-C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .checkpoints import CheckpointStore
from .errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def handling_stop_signals(handler: Any) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` while entered, the previous handlers after;
    nothing changes outside the main thread (Python runs handlers only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


class StopSignals:
    """While entered (in the main thread), SIGINT/SIGTERM set a flag that `check` turns
    into `Interrupted` between batches; a second signal stops right away."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._handling: Any = None

    def __enter__(self) -> StopSignals:
        self.signum = None
        self._handling = handling_stop_signals(self._handle)
        self._handling.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        handling, self._handling = self._handling, None
        handling.__exit__(*exc)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # a second Ctrl-C: stop right now
            raise KeyboardInterrupt
        self.signum = signum

    def check(
        self, epoch: int, store: CheckpointStore, run_dir: Path, finished: bool = False
    ) -> None:
        """Raise `Interrupted` if a signal came (``epoch`` 0-based, the unfinished one;
        ``finished``: after the last epoch, e.g. in its validation)."""
        if self.signum is None:
            return
        name = signal.Signals(self.signum).name
        kept = store.progress("last")["epoch"] if store.exists("last") else None
        where, redone = "after the last epoch", ""
        if not finished:
            where = f"in epoch {epoch + 1}"
            redone = " (the unfinished epoch is redone, so the result matches an uninterrupted run)"
        raise Interrupted(
            self.signum,
            f"interrupted by {name} {where}; "
            + (f"checkpoint of epoch {kept} kept" if kept else "no epoch was complete yet"),
            run_dir,
            f"continue with --resume {run_dir}{redone}",
        )


@contextmanager
def stop_the_run(run_dir: Path) -> Iterator[None]:
    """While entered (in the main thread), SIGINT/SIGTERM raise `Interrupted` at once; a
    fit inside handles them its own way (`StopSignals`) and hands them back after."""

    def handle(signum: int, frame: Any) -> None:
        raise Interrupted(
            signum,
            f"interrupted by {signal.Signals(signum).name}; the checkpoints written are kept",
            run_dir,
            f"continue with --resume {run_dir}",
        )

    with handling_stop_signals(handle):
        yield
