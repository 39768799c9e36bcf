"""`Throughput`: what a long `tl predict` prints when stderr is a log file, not a terminal."""

from __future__ import annotations

import io

from tl.core.progress import ProgressReporter, Throughput


def lines_of(every: float, batches: list[int], total: int | None) -> list[str]:
    stream = io.StringIO()
    with Throughput(total, "images", ProgressReporter(stream=stream), every=every) as progress:
        for n in batches:
            progress.add(n)
    return [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]


def test_a_line_per_interval_and_one_at_the_end():
    lines = lines_of(0.0, [64, 64, 12], 140)
    assert [line.split(" (")[0] for line in lines] == [
        "64/140 images", "128/140 images", "140/140 images", "140/140 images"
    ]  # fmt: skip
    assert all(line.endswith(" images/s)") for line in lines[2:])
    assert all(", ETA " in line and line.endswith(" s)") for line in lines[:2])


def test_a_quick_job_prints_only_its_total_and_an_unknown_total_is_left_out():
    assert [line.split(" (")[0] for line in lines_of(3600, [5000, 5000], None)] == ["10,000 images"]


def test_nothing_is_printed_for_an_empty_or_failed_loop():
    assert lines_of(0.0, [], 10) == []
    stream = io.StringIO()
    try:
        with Throughput(10, "images", ProgressReporter(stream=stream), every=3600) as progress:
            progress.add(3)
            raise ValueError("bad image")
    except ValueError:
        pass
    assert stream.getvalue() == ""


def test_training_epochs_log_a_labelled_line_per_interval_without_a_closing_one():
    stream = io.StringIO()
    reporter = ProgressReporter(stream=stream)
    with Throughput(96, "items", reporter, every=0.0, label="epoch 2/5", final=False) as progress:
        for n in (32, 32, 32):
            progress.add(n)
    lines = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert [line.split(" (")[0] for line in lines] == [
        "epoch 2/5: 32/96 items", "epoch 2/5: 64/96 items", "epoch 2/5: 96/96 items"
    ]  # fmt: skip
    assert "ETA" in lines[0] and "ETA" not in lines[-1]
