"""Checkpoints written behind the training loop: a snapshot per epoch, written in order by
one thread; saves that wait for a slow disk coalesced (the newest written, ``best`` before
the ``last`` that links it); the writer held to a tenth of the time and to
``--checkpoint-every`` unless something waits for it; the copies of a backbone that does not train reused."""

from __future__ import annotations

import errno
import json
import os
import threading
import time

import pytest
import tl.core.checkpoints as checkpoints
import torch
from safetensors.torch import load_file
from test_trainer_speed import BATCH, InputNorm, X
from tl.core.background import OrderedWriter
from tl.core.checkpoints import CheckpointStore
from tl.core.errors import OutputError
from tl.core.snapshots import ModelSnapshots
from torch import nn


def _progress(epoch: int, best: int) -> dict:
    return {"epoch": epoch, "bad_epochs": epoch - best, "best_epoch": best, "best_score": 0.5,
            "stopped_early": False, "history": [{"epoch": e} for e in range(1, epoch + 1)]}  # fmt: skip


def _store_with_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = InputNorm()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    nn.functional.cross_entropy(model(X[:BATCH]), (X[:BATCH, 0] > 5).long()).backward()
    optimizer.step()
    return CheckpointStore(tmp_path), model, optimizer


def test_a_background_checkpoint_holds_the_epoch_it_was_saved_in(tmp_path):
    store, model, optimizer = _store_with_checkpoint(tmp_path)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = optimizer.state_dict()["state"][0]["exp_avg"].clone()
    progress = {"epoch": 1, "bad_epochs": 0, "best_epoch": 1, "best_score": 0.5,
                "stopped_early": False, "history": [{"epoch": 1}]}  # fmt: skip
    store.save("last", model, {"plugin": "speed"}, progress,
               {"optimizer": optimizer.state_dict()}, background=True)  # fmt: skip
    with torch.no_grad():  # training goes on while the files are written
        for p in model.parameters():
            p.add_(1.0)
    optimizer.step()
    progress["history"].append({"epoch": 2})
    assert store.progress("last")["history"] == [{"epoch": 1}]  # a read waits for the write
    saved = load_file(str(tmp_path / "checkpoints/last.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in weights.items())
    state = store.training_state("last")["optimizer"]["state"][0]
    assert torch.equal(state["exp_avg"], moments)
    store.close()


def test_a_failed_background_write_stops_the_queue_and_raises_once(tmp_path, monkeypatch):
    store, model, _ = _store_with_checkpoint(tmp_path)
    progress = {"epoch": 1, "bad_epochs": 0, "best_epoch": 1, "best_score": 0.5,
                "stopped_early": False, "history": []}  # fmt: skip
    store.save("best", model, {}, progress, background=True)
    store.flush()

    def full_disk(tensors, filename, metadata=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(checkpoints, "save_file", full_disk)
    store.save("best", model, {}, {**progress, "epoch": 2}, background=True)
    # the error comes from the next save when the failed write has ended by then, else flush
    with pytest.raises(OutputError, match="No space left.*best checkpoint of epoch 1 is intact"):
        store.save("last", model, {}, {**progress, "epoch": 2}, background=True,
                   weights_from="best")  # fmt: skip
        store.flush()
    store.close()  # raised once
    assert store.progress("best")["epoch"] == 1
    assert not store.path("last", ".json").exists(), "the write after the failed one never ran"


def test_the_writer_runs_jobs_in_order_and_bounds_what_waits():
    writer, done, release = OrderedWriter(max_pending=1), [], threading.Event()

    def slow() -> None:
        release.wait(5)
        done.append("slow")

    writer.submit(slow)
    threading.Timer(0.2, release.set).start()
    started = time.perf_counter()
    writer.submit(lambda: done.append("next"))  # waits for the slow one: one may be pending
    assert time.perf_counter() - started >= 0.15 and done == ["slow"]
    writer.close()
    assert done == ["slow", "next"]


def test_saves_waiting_for_a_slow_disk_are_coalesced_newest_first(tmp_path, monkeypatch):
    written, release = [], threading.Event()
    save_file = checkpoints.save_file

    def slow_disk(tensors, filename, metadata=None):
        release.wait(10)  # the first write holds the disk while three epochs end
        written.append(json.loads(metadata[checkpoints.TL_WEIGHTS_KEY])["epoch"])
        save_file(tensors, filename, metadata)

    monkeypatch.setattr(checkpoints, "save_file", slow_disk)
    store, model = CheckpointStore(tmp_path), InputNorm()
    epochs = {}
    for epoch, improved in ((1, True), (2, True), (3, False)):
        with torch.no_grad():
            model.head.weight.fill_(epoch)
        epochs[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        best = epoch if improved else 2
        with store.together():
            if improved:
                store.save("best", model, {"epoch": epoch}, _progress(epoch, best), background=True)
            store.save("last", model, {"epoch": epoch}, _progress(epoch, best),
                       {"step": torch.tensor(epoch)}, weights_from="best" if improved else None,
                       background=True)  # fmt: skip
    release.set()
    store.close()
    # epoch 1 (last links best: one file), then epoch 2's best and epoch 3's last; epoch 2's
    # last was replaced while it waited and never written
    assert written == [1, 2, 3]
    assert store.progress("best")["epoch"] == 2 and store.progress("last")["epoch"] == 3
    for tag, epoch in (("best", 2), ("last", 3)):
        saved = load_file(str(tmp_path / f"checkpoints/{tag}.safetensors"))
        assert all(torch.equal(saved[k], v) for k, v in epochs[epoch].items()), tag
    assert int(store.training_state("last")["step"]) == 3


def test_the_writer_keeps_to_its_share_of_the_time_unless_flushed():
    writer, started = OrderedWriter(max_busy=0.25), []
    writer.submit(lambda: time.sleep(0.2))  # 0.2 s busy: the next job waits 0.6 s more
    writer.submit(lambda: started.append(time.monotonic()))
    time.sleep(0.4)
    assert not started, "the second job started inside the first one's pause"
    asked = time.monotonic()
    writer.flush()  # a reader waits: no pause
    assert started and started[0] - asked < 0.3
    writer.close()
    with pytest.raises(ValueError, match="max_busy"):
        OrderedWriter(max_busy=0)


def test_a_paced_writer_starts_a_job_at_most_once_per_interval():
    writer, started = OrderedWriter(), []
    writer.pace(0.5)
    paced = time.monotonic()
    writer.submit(lambda: started.append(time.monotonic()))
    time.sleep(0.3)
    assert not started, "the first job waits for the interval too"
    writer.flush()  # a reader waits: at once
    assert started[0] - paced < 0.45
    writer.submit(lambda: started.append(time.monotonic()))
    time.sleep(0.2)
    assert len(started) == 1, "the next job waits for the interval after the previous start"
    time.sleep(0.5)
    assert len(started) == 2 and started[1] - started[0] >= 0.45
    writer.pace(0)
    writer.submit(lambda: started.append(time.monotonic()))
    time.sleep(0.2)
    assert len(started) == 3, "0: as soon as the share of the time allows"
    writer.close()


def test_checkpoints_within_the_interval_are_coalesced_and_written_when_read(tmp_path):
    store, model = CheckpointStore(tmp_path), InputNorm()
    store.write_every(3600)
    for epoch in (1, 2, 3):
        with torch.no_grad():
            model.head.weight.fill_(epoch)
        with store.together():
            store.save("best", model, {"epoch": epoch}, _progress(epoch, epoch), background=True)
            store.save("last", model, {"epoch": epoch}, _progress(epoch, epoch),
                       {"step": torch.tensor(epoch)}, weights_from="best", background=True)  # fmt: skip
    time.sleep(0.2)
    assert not store.path("last", ".json").exists(), "nothing is written inside the interval"
    assert store.progress("last")["epoch"] == 3  # a read (the stop on a signal) writes the newest
    saved = load_file(str(tmp_path / "checkpoints/best.safetensors"))
    assert torch.equal(saved["head.weight"], model.head.weight)
    assert int(store.training_state("last")["step"]) == 3
    store.close()


class _Probe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.head = nn.Linear(4, 2)


def test_snapshots_reuse_the_copies_of_what_did_not_train():
    model, snapshots = _Probe(), ModelSnapshots()
    head_only = nn.ModuleDict({"head": model.head})  # the step model of a cached epoch
    first = snapshots.take(model.state_dict(), model, head_only)
    with torch.no_grad():
        model.head.weight.add_(1.0)
    second = snapshots.take(model.state_dict(), model, head_only)
    backbone = [k for k in first if k.startswith("backbone.")]
    assert all(second[k] is first[k] for k in backbone), "a frozen backbone is copied once"
    assert torch.equal(second["head.weight"], model.head.weight)
    assert not torch.equal(first["head.weight"], second["head.weight"])
    with torch.no_grad():  # an epoch that trains everything, BatchNorm statistics too
        model.backbone[0].weight.add_(1.0)
        model.backbone[1].running_mean.add_(1.0)
    third = snapshots.take(model.state_dict(), model, model)
    assert torch.equal(third["backbone.0.weight"], model.backbone[0].weight)
    assert torch.equal(third["backbone.1.running_mean"], model.backbone[1].running_mean)
    assert not torch.equal(third["backbone.0.weight"], first["backbone.0.weight"])
    assert not snapshots._kept, "nothing is kept from an epoch that trained the whole model"
    made = {"x": torch.ones(2)}  # a tensor made for saving is nobody else's: not copied
    assert snapshots.take(made, model, model)["x"] is made["x"]
