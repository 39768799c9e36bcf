"""Dynamic batching: concurrent requests to one model become one onnxruntime call.

Each model has one `Batcher`. A request's tensors wait in its queue; the batcher takes the
oldest, adds every waiting request whose tensors can be stacked with it (same names,
dtypes and non-batch dimensions) while the batch holds at most ``max_batch`` items, and
waits for more for at most ``max_delay`` seconds after the oldest arrived — but only while
more requests for the model are known to be on their way (received, still being parsed):
a lone client never waits for company that is not coming. The batch runs in the model's
own worker thread (onnxruntime releases the GIL), one at a time, while the next batch
gathers; results are split back along axis 0.

A batch that fails is rerun one request at a time, so that one bad request cannot fail
the others it was batched with. A request of more than ``max_batch`` items is queued as
parts of ``max_batch``, so no onnxruntime call is larger than the server allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import RequestError

Feeds = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]
log = logging.getLogger("tl.serve")


@dataclass
class Ticket:
    """A request on its way to the batcher (see `Batcher.expecting`)."""

    used: bool = False


@dataclass
class _Pending:
    feeds: Feeds
    size: int
    key: tuple[Any, ...]
    future: asyncio.Future[Outputs]
    arrived: float = field(default_factory=time.monotonic)


def _key(feeds: Feeds) -> tuple[Any, ...]:
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(feeds.items()))


class Batcher:
    """Gathers requests for ``run`` (a function of one batch's feeds to its outputs)."""

    def __init__(
        self,
        run: Callable[[Feeds], Outputs],
        *,
        name: str,
        max_batch: int,
        max_delay: float,
        batchable: bool = True,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        self._call = run
        self.name = name
        self.batchable = batchable
        self.max_batch = max(1, int(max_batch)) if batchable else 1
        self.max_delay = max(0.0, float(max_delay))
        self._observe = observe or (lambda size, seconds: None)
        self._queue: deque[_Pending] = deque()
        self._announced = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"tl-serve-{self.name}")
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(
                    RequestError(503, "the server is shutting down", "retry the request")
                )
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # ------------------------------------------------------------ clients
    @contextlib.contextmanager
    def expecting(self) -> Iterator[Ticket]:
        """Announce a request that will `submit` soon (while its body is read and parsed):
        a batch being gathered waits for it, within ``max_delay``."""
        ticket = Ticket()
        self._announced += 1
        try:
            yield ticket
        finally:
            if not ticket.used:
                self._announced -= 1
                self._notify()

    async def submit(self, feeds: Feeds, ticket: Ticket | None = None) -> Outputs:
        """The outputs of ``feeds`` (a batch of one or more items along axis 0). A request of
        more than ``max_batch`` items runs in parts of ``max_batch``: one client cannot make
        the model run a batch (and allocate its activations) larger than the server allows."""
        if ticket is not None and not ticket.used:
            ticket.used = True
            self._announced -= 1
        size = _size(feeds)
        if self.batchable and size > self.max_batch:
            step = self.max_batch
            parts = [{k: a[i : i + step] for k, a in feeds.items()} for i in range(0, size, step)]
            results = await asyncio.gather(*(self._enqueue(part) for part in parts))
            return _joined(parts, results)
        return await self._enqueue(feeds)

    async def _enqueue(self, feeds: Feeds) -> Outputs:
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(feeds, _size(feeds), _key(feeds), future))
        self._notify()
        return await future

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------ the loop
    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            group = [self._queue.popleft()]
            if group[0].future.done():  # its client went away
                continue
            try:
                await self._gather(group)
                await self._run(group)
            except Exception as exc:  # a bug here must not stop the model's batcher
                log.exception("batcher of %s failed", self.name)
                self._fail(group, exc)

    async def _gather(self, group: list[_Pending]) -> None:
        assert self._wake is not None
        deadline = group[0].arrived + self.max_delay
        while True:
            size = self._fill(group)
            remaining = deadline - time.monotonic()
            if size >= self.max_batch or self._announced <= 0 or remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                self._fill(group)
                return

    def _fill(self, group: list[_Pending]) -> int:
        """Move the waiting requests that stack with ``group[0]`` and fit into ``group``."""
        size = sum(p.size for p in group)
        if size >= self.max_batch:
            return size
        key, kept = group[0].key, deque()
        while self._queue:
            pending = self._queue.popleft()
            if pending.future.done():
                continue
            if pending.key == key and size + pending.size <= self.max_batch:
                group.append(pending)
                size += pending.size
            else:
                kept.append(pending)
        self._queue.extendleft(reversed(kept))
        return size

    async def _run(self, group: list[_Pending]) -> None:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        feeds = group[0].feeds if len(group) == 1 else _concat(group)
        total = sum(p.size for p in group)
        start = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self._call, feeds)
        except Exception as exc:
            if len(group) == 1:
                self._fail(group, exc)
                return
            outputs = None
        else:
            self._observe(total, time.perf_counter() - start)
        if outputs is not None and len(group) == 1:
            _resolve(group[0], outputs)
            return
        if outputs is None or any(np.shape(a)[:1] != (total,) for a in outputs.values()):
            for pending in group:  # failed or not splittable: one request at a time
                await self._run([pending])
            return
        offset = 0
        for pending in group:
            end = offset + pending.size
            _resolve(pending, {name: a[offset:end] for name, a in outputs.items()})
            offset = end

    def _fail(self, group: list[_Pending], exc: BaseException) -> None:
        for pending in group:
            if not pending.future.done():
                pending.future.set_exception(exc)


def _concat(group: list[_Pending]) -> dict[str, np.ndarray]:
    names = list(group[0].feeds)
    return {name: np.concatenate([p.feeds[name] for p in group], axis=0) for name in names}


def _size(feeds: Feeds) -> int:
    return int(next(iter(feeds.values())).shape[0]) if feeds else 1


def _joined(parts: list[Feeds], results: list[Outputs]) -> Outputs:
    """The outputs of a request's parts, in order (each part's outputs are per item)."""
    for part, outputs in zip(parts, results, strict=True):
        if any(np.shape(a)[:1] != (_size(part),) for a in outputs.values()):
            raise RuntimeError("the model's outputs are not per item: a request cannot be split")
    return {name: np.concatenate([r[name] for r in results], axis=0) for name in results[0]}


def _resolve(pending: _Pending, outputs: Outputs) -> None:
    if not pending.future.done():
        pending.future.set_result(outputs)
