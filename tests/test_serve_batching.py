"""The dynamic batcher of `tl serve`, in process, on a numpy "model" that records its calls."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from tl.core.serving.batching import Batcher


class Model:
    """y = 2x per item; refuses an item below zero (as onnxruntime refuses a bad index)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.calls: list[int] = []
        self.seconds = seconds

    def __call__(self, feeds):
        x = feeds["x"]
        self.calls.append(len(x))
        time.sleep(self.seconds)
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": 2 * x, "n": np.arange(len(x))}


def serve(model: Model, coroutine, **kw):
    async def main():
        batcher = Batcher(model, name="m", **{"max_batch": 32, "max_delay": 0.05, **kw})
        batcher.start()
        try:
            return await coroutine(batcher)
        finally:
            await batcher.stop()

    return asyncio.run(main())


def items(start: int, count: int, width: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.arange(start * width, (start + count) * width, dtype=np.float32).reshape(count, width)}  # fmt: skip


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    model = Model(seconds=0.02)

    async def clients(batcher):
        tickets = [batcher.expecting() for _ in range(12)]
        held = [t.__enter__() for t in tickets]  # all 12 announced while the first is parsed
        runs = [batcher.submit(items(k, 1), ticket) for k, ticket in enumerate(held)]
        results = await asyncio.gather(*runs)
        for t in tickets:
            t.__exit__(None, None, None)
        return results

    results = serve(model, clients)
    for k, outputs in enumerate(results):
        np.testing.assert_array_equal(outputs["y"], 2 * items(k, 1)["x"])
    assert sum(model.calls) == 12 and len(model.calls) <= 2, model.calls


def test_a_lone_request_does_not_wait_for_company():
    model = Model()

    async def one(batcher):
        start = time.perf_counter()
        await batcher.submit(items(0, 1))
        return time.perf_counter() - start

    assert serve(model, one, max_delay=2.0) < 0.5


def test_a_request_larger_than_max_batch_runs_in_parts_of_max_batch():
    model = Model()

    async def large(batcher):
        return await batcher.submit(items(0, 10))

    outputs = serve(model, large, max_batch=4)
    assert model.calls == [4, 4, 2]
    np.testing.assert_array_equal(outputs["y"], 2 * items(0, 10)["x"])
    np.testing.assert_array_equal(outputs["n"], [0, 1, 2, 3, 0, 1, 2, 3, 0, 1])


def test_a_bad_request_fails_alone_and_the_others_in_its_batch_are_answered():
    model = Model(seconds=0.02)
    bad = {"x": -np.ones((1, 3), np.float32)}

    async def mixed(batcher):
        with batcher.expecting() as t1, batcher.expecting() as t2, batcher.expecting() as t3:
            runs = [batcher.submit(items(0, 1), t1), batcher.submit(bad, t2),
                    batcher.submit(items(5, 2), t3)]  # fmt: skip
            return await asyncio.gather(*runs, return_exceptions=True)

    first, failed, last = serve(model, mixed)
    assert isinstance(failed, ValueError)
    np.testing.assert_array_equal(first["y"], 2 * items(0, 1)["x"])
    np.testing.assert_array_equal(last["y"], 2 * items(5, 2)["x"])


def test_requests_that_do_not_stack_run_apart():
    model = Model()

    async def shapes(batcher):
        with batcher.expecting() as t1, batcher.expecting() as t2:
            runs = [batcher.submit(items(0, 2, width=3), t1), batcher.submit(items(0, 2, width=5), t2)]  # fmt: skip
            return await asyncio.gather(*runs)

    narrow, wide = serve(model, shapes)
    assert narrow["y"].shape == (2, 3) and wide["y"].shape == (2, 5)
    assert sorted(model.calls) == [2, 2]


@pytest.mark.parametrize("max_batch", [1, 3])
def test_no_call_is_larger_than_max_batch_under_load(max_batch):
    model = Model(seconds=0.001)

    async def load(batcher):
        sizes = [1, 2, 5, 1, 7, 3, 1, 1]
        results = await asyncio.gather(*(batcher.submit(items(k, n)) for k, n in enumerate(sizes)))
        return sizes, results

    sizes, results = serve(model, load, max_batch=max_batch)
    assert max(model.calls) <= max_batch and sum(model.calls) == sum(sizes)
    for k, (n, outputs) in enumerate(zip(sizes, results, strict=True)):
        np.testing.assert_array_equal(outputs["y"], 2 * items(k, n)["x"])
