"""Writes that run behind the training loop: one thread, in submission order.

Training must not wait for checkpoint files (serialising and ``fsync``-ing ~60 MB of a
resnet's weights and optimizer state per epoch; much more for big models and slow disks),
but their order is part of their meaning — ``best`` before ``last``, a checkpoint's JSON
after its tensors — so one worker runs the jobs one after another. The first job that fails
stops the queue (later jobs would build on what it did not write); its exception is
re-raised in the training thread by the next `submit`, `check` or `flush`.

With ``max_busy`` the worker keeps to that fraction of the time: after a job that took
``t`` seconds the next one starts no sooner than ``t * (1 / max_busy - 1)`` later (at once
when `flush` is waiting). On two cores a writer that is always busy takes a core from
training; a caller that coalesces what waits (`tl.core.checkpoints.CheckpointStore`)
then writes fewer, newer files instead of slowing the loop. `pace` adds a floor: jobs start
at most once per that many seconds (``--checkpoint-every``), and what waits meanwhile is
coalesced the same way."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class OrderedWriter:
    """``max_pending``: at most that many jobs wait or run; `submit` blocks until one ends
    (each job holds a copy of the tensors it writes: memory stays bounded on a slow disk)."""

    def __init__(
        self, name: str = "tl-writer", max_pending: int = 2, max_busy: float = 1.0
    ) -> None:
        if not 0 < max_busy <= 1:
            raise ValueError(f"max_busy must be in (0, 1], not {max_busy}")
        self._name, self._max_pending, self._max_busy = name, max_pending, max_busy
        self._next_start = 0.0  # time.monotonic() before which no job starts
        self._every = 0.0  # `pace`: seconds from one job's start to the next one's
        self._hurry = threading.Event()  # set while flush waits: no pause
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        self._error: BaseException | None = None
        self._raised = False
        self._lock = threading.Lock()

    def pace(self, every: float) -> None:
        """From now on a job starts at most once per ``every`` seconds, the first one no
        sooner than ``every`` from now (0: as ``max_busy`` allows); `flush` does not wait."""
        self._every = float(every)
        self._next_start = time.monotonic() + self._every

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` after every job submitted before it (raises an earlier job's error)."""
        self.check()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        self._pending = [f for f in self._pending if not f.done()]
        while len(self._pending) >= self._max_pending:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._run, job))

    def _run(self, job: Callable[[], None]) -> None:
        pause = self._next_start - time.monotonic()
        if pause > 0:
            self._hurry.wait(pause)
        with self._lock:
            if self._error is not None:
                return
        started = time.monotonic()
        try:
            job()
        except BaseException as exc:  # re-raised in the submitting thread
            with self._lock:
                self._error = exc
        ended = time.monotonic()
        busy_pause = (ended - started) * (1 / self._max_busy - 1)
        self._next_start = max(ended + busy_pause, started + self._every)

    def check(self) -> None:
        """Raise the error of the job that failed, once, without waiting for the others
        (the jobs after it do not run)."""
        if self._error is None:  # once per training batch: no lock on the usual path
            return
        with self._lock:
            if self._error is None or self._raised:
                return
            self._raised = True
        raise self._error

    def flush(self) -> None:
        """Wait until every submitted job has run (no pause for ``max_busy``); raise the
        first error."""
        self._hurry.set()
        try:
            for future in self._pending:
                future.result()
        finally:
            self._hurry.clear()
        self._pending = []
        self.check()

    def close(self) -> None:
        """`flush`, then stop the worker thread (a later `submit` starts a new one)."""
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
