"""The input pipeline: sampler batches resolved and collated, optionally in ``DataLoader`` workers.

Each worker ``w`` of ``W`` seeks its own copy of the sampler to ``start + w`` and yields
every ``W``-th batch; the ``DataLoader`` takes workers round-robin, so batches arrive in
sampler order whatever the number of workers. The position to resume from is the
trainer's step counter (see :meth:`~hbkit.samplers.HybridBatchSampler.seek`), never how
many batches a prefetching loader has pulled.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hbkit.parallel import ParallelDataset
from hbkit.samplers import Batch, HybridBatchSampler


@dataclass
class LoadedBatch:
    """A sampler batch and its collated form."""

    batch: Batch
    data: Any


class _BatchStream(IterableDataset):
    def __init__(self, sampler: HybridBatchSampler, datasets: Sequence[ParallelDataset],
                 collate: Callable, start: int) -> None:
        self.sampler, self.datasets, self.collate, self.start = sampler, list(datasets), collate, start

    def __iter__(self) -> Iterator[LoadedBatch]:
        info = get_worker_info()
        wid, n = (info.id, info.num_workers) if info is not None else (0, 1)
        sampler = copy.deepcopy(self.sampler)
        sampler.seek(self.start + wid)
        for b in itertools.islice(sampler.batches(), 0, None, n):
            ds = self.datasets[b.dataset]
            yield LoadedBatch(b, self.collate([ds.pair(r) for r in b.refs]))


def batch_loader(sampler: HybridBatchSampler, datasets: Sequence[ParallelDataset], collate: Callable,
                 start: int = 0, workers: int = 0) -> Iterator[LoadedBatch]:
    """An endless iterator of :class:`LoadedBatch` from global batch ``start`` on.

    ``workers=0`` collates in this process; ``workers>0`` in that many ``DataLoader`` workers."""
    stream = _BatchStream(sampler, datasets, collate, start)
    if workers <= 0:
        return iter(stream)
    # its own generator: creating workers must not draw from the global RNG (dropout masks of a resumed run)
    loader = DataLoader(stream, batch_size=None, num_workers=workers, persistent_workers=False,
                        prefetch_factor=2, multiprocessing_context="fork" if _fork_ok() else None,
                        generator=torch.Generator().manual_seed(0))
    return iter(loader)


def _fork_ok() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods() and not torch.cuda.is_initialized()
