"""Training batches made ahead of the step that needs them (``parahydra train --prefetch N``).

``TrainingBatches.batch(step, rank)`` is a pure function of ``(seed, rank, step)``, so
making it early, elsewhere, changes nothing the run sees: :func:`batches` yields exactly
``data.batch(step, rank)`` for ``step = start … stop − 1``, in that order, whatever the
depth. With ``depth`` > 0 worker *processes* (``DataLoader`` workers, not threads: they
neither hold the trainer's GIL nor stay on a CPU the trainer is pinned to; one for
``parahydra train``, several for a GPU run) render up to ``depth`` batches each ahead
while the step runs. It pays off only when a core is idle
next to the trainer's: a synthetic multi-view batch of the ``small`` recipe costs about
5 % of a step, a photo batch about 1 % (``bench/train_speed.py``).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


class _Steps(Dataset):
    """Item ``step`` is the training batch of that step."""

    def __init__(self, data, rank: int):
        self.data, self.rank = data, rank

    def __getitem__(self, step: int) -> tuple[Tensor, Tensor]:
        return self.data.batch(step, self.rank)


def batches(data, start: int, stop: int, rank: int = 0, depth: int = 0,
            workers: int = 1) -> Iterator[tuple[Tensor, Tensor]]:
    """``data.batch(step, rank)`` for ``start <= step < stop``, up to ``depth`` made ahead by
    each of ``workers`` processes (a GPU run feeds its device with several)."""
    if depth <= 0 or workers <= 0 or stop - start <= 1:
        for step in range(start, stop):
            yield data.batch(step, rank)
        return
    # Its own generator: a loader draws a seed for its workers, which must not come from the
    # global RNG that the training noise uses (a run with prefetch is the run without).
    loader = DataLoader(_Steps(data, rank), batch_size=None, sampler=range(start, stop), num_workers=workers,
                        prefetch_factor=depth, generator=torch.Generator().manual_seed(0))
    yield from loader
