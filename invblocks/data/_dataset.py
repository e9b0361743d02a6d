"""A task's samples as a PyTorch data set: :class:`TaskDataset`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..sampling import Sample, SampleRequest

SampleFn = Callable[[SampleRequest], "list[Tensor] | Sample"]
"""A task's sampler: the ``n`` images ``(C, H, W)`` of one :class:`SampleRequest`, or a
:class:`~invblocks.sampling.Sample` holding them with their reference (paired data)."""


class TaskDataset(Dataset):
    """Samples of a task: ``dataset[i]`` is a ``(N*C, H, W)`` float tensor, slots in task
    order; for a sampler of paired data (one that returns a
    :class:`~invblocks.sampling.Sample` with a reference), the pair ``(x, reference)``.

    Training samples are random (item, crop, flips) from a generator seeded with
    ``seed`` and the index, so they are reproducible and independent of worker processes;
    validation samples are deterministic (item ``i``, centre crop). ``options`` go to the
    sampler as :attr:`~invblocks.sampling.SampleRequest.options`, over the task's
    ``sampling`` defaults.
    """

    def __init__(
        self,
        task: Any,
        items: Sequence[Any],
        *,
        n_inputs: int,
        crop: int,
        train: bool,
        length: int | None = None,
        seed: int = 0,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not items:
            raise ValueError(f"task {task.name!r}: no data items")
        task.check_inputs(n_inputs)
        self.task, self.items, self.n_inputs = task, list(items), n_inputs
        self.crop, self.train, self.seed = crop, train, seed
        self.options = dict(getattr(task, "sampling", {}) or {}) | dict(options or {})
        self.length = length if length is not None else (10_000 if train else len(self.items))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor | tuple[Tensor, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        request = SampleRequest(
            items=self.items,
            index=index,
            n_inputs=self.n_inputs,
            crop=self.crop,
            generator=g,
            train=self.train,
            options=self.options,
        )
        sample = self.task.sample(request)
        if isinstance(sample, Sample):
            x = self.task.stack(sample.images)
            return x if sample.reference is None else (x, sample.reference)
        return self.task.stack(sample)
