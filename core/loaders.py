"""Data loaders whose batches depend only on ``(seed, epoch)``.

Shuffled order is ``torch.randperm`` from a generator seeded with ``seed + epoch``, and every
batch carries a seed of its own, so an epoch's batches — and the augmentation applied in
worker processes — never depend on what ran before. That is what makes ``--resume`` after a
kill end where an uninterrupted run ends.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from . import distributed as dist
from .feature_cache import collate_batch


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of indices in an order fixed by ``seed + epoch`` (``set_epoch``).

    Shuffled order is ``torch.randperm(n)`` from a generator seeded with ``seed + epoch`` —
    exactly `DistributedSampler`'s permutation, which supplies the order under DDP: rank r
    gets items r, r+W, … of each global batch, so W ranks with ``batch_size / W`` see the
    same global batches as one process with ``batch_size``.
    """

    def __init__(
        self, dataset: Any, batch_size: int, shuffle: bool, seed: int, distributed: bool
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = len(dataset), batch_size, shuffle, seed
        self.epoch = 0
        self.sampler = (
            DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)
            if distributed
            else None
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def _order(self) -> list[int]:
        if self.sampler is not None:
            return list(self.sampler)
        if not self.shuffle:
            return list(range(self.n))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=generator).tolist()

    def _starts(self, n: int) -> list[int]:
        """Batch start offsets. When shuffling (training), a last batch of one item joins
        the batch before it: BatchNorm cannot train on a single item."""
        starts = list(range(0, n, self.batch_size))
        if self.shuffle and len(starts) > 1 and n - starts[-1] == 1:
            starts.pop()
        return starts

    def __iter__(self):
        order = self._order()
        starts = self._starts(len(order))
        for number, start in enumerate(starts):
            end = starts[number + 1] if number + 1 < len(starts) else len(order)
            batch_seed = (self.seed + self.epoch) * 100_003 + number
            yield [(batch_seed, i) for i in order[start:end]]

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else self.n
        return len(self._starts(n))


class BatchSeeded(torch.utils.data.Dataset):
    """Takes the sampler's ``(batch_seed, index)`` keys. In a worker process it reseeds the
    RNGs from the batch's seed before fetching, so augmentation in persistent workers depends
    on (seed, epoch, batch) only, not on worker history; in the main process the per-epoch
    ``seed_everything`` already fixes it."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        return self.dataset[key[1] if isinstance(key, tuple) else key]

    def __getitems__(self, keys: list[Any]) -> Any:
        if torch.utils.data.get_worker_info() is not None:
            seed = keys[0][0]
            random.seed(seed)
            np.random.seed(seed % (2**32))
            torch.manual_seed(seed)
        indices = [k[1] for k in keys]
        many = getattr(self.dataset, "__getitems__", None)
        return many(indices) if many else [self.dataset[i] for i in indices]


class LoaderCache:
    """The trainer's loaders, remembered per (dataset, collate, shuffle, …) so that worker
    processes persist across epochs. ``config`` is the trainer's `TrainConfig` (batch_size,
    seed, num_workers are read from it when a loader is made)."""

    def __init__(self, config: Any, pin_memory: bool) -> None:
        self.config, self.pin_memory = config, pin_memory
        self._loaders: dict[Any, tuple[Any, DataLoader]] = {}

    def get(
        self,
        dataset: Any,
        collate: Any,
        shuffle: bool,
        epoch: int = 0,
        distributed: bool = False,
        keep: bool = True,
        batch_size: int | None = None,
    ) -> DataLoader:
        """See `tl.core.trainer.Trainer.loader`."""
        distributed = distributed and dist.is_distributed()
        key = (id(dataset), id(collate), shuffle, distributed, batch_size)
        cached = self._loaders.get(key)
        if cached is None or cached[0] is not dataset:
            batch_size = batch_size or self.config.batch_size
            if distributed:
                batch_size = dist.local_batch_size(batch_size)
            sampler = EpochBatchSampler(
                dataset, batch_size, shuffle, self.config.seed * 1000, distributed
            )
            workers = 0 if collate is collate_batch else self.config.num_workers
            loader = DataLoader(
                BatchSeeded(dataset),
                batch_sampler=sampler,
                collate_fn=collate,
                num_workers=workers,
                pin_memory=self.pin_memory,
                persistent_workers=workers > 0 and keep,
            )
            cached = (dataset, loader)
            if keep:
                self._loaders[key] = cached
        cached[1].batch_sampler.set_epoch(epoch)
        return cached[1]
