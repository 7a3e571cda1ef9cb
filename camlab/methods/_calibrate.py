"""Choosing a batch size by measurement, on the real work, and remembering it.

Inference cost per image depends on the batch size in a way that no constant captures: on a 2-core CPU
efficientnet_lite0 is fastest per image at batch 16 and 1.5x slower at 64, on a GPU larger batches keep getting
faster until memory runs out. :func:`run_in_batches` therefore times the work it has to do anyway: the first items go
through in batches of growing size (4, 8, 16, ... up to ``largest``), each size run twice and timed the second time
(the first call at a new shape pays one-off costs such as oneDNN kernel selection or cuDNN autotuning), until the time
per item stops improving by more than 5%; the rest runs at the best size. Nothing is computed twice and nothing is
thrown away. The choice is cached per model, device, dtype, item shape and thread count, so later calls start at the
best size right away. On CUDA the device is synchronised around each timed batch.
"""
from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Hashable

import torch

_CHOICES: "weakref.WeakKeyDictionary[object, dict[Hashable, int]]" = weakref.WeakKeyDictionary()
SMALLEST = 4


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run: Callable[[int, int], None], start: int, stop: int, device: torch.device) -> float:
    _synchronize(device)
    began = time.perf_counter()
    run(start, stop)
    _synchronize(device)
    return (time.perf_counter() - began) / (stop - start)


def cache_key(example: torch.Tensor) -> tuple:
    """What the best batch size depends on besides the model: device, dtype, item shape, CPU threads."""
    return (str(example.device), example.dtype, tuple(example.shape[1:]), torch.get_num_threads())


def cached_batch_size(owner: object, key: Hashable) -> int | None:
    return _CHOICES.get(owner, {}).get(key)


def run_in_batches(total: int, run: Callable[[int, int], None], owner: object, key: Hashable,
                   device: torch.device, largest: int = 64) -> int:
    """Call ``run(start, stop)`` on consecutive slices that cover ``range(total)``; returns the batch size used for
    the bulk of the work. The first time for a given ``(owner, key)`` the slice sizes are probed as the module
    docstring describes; the choice is remembered (weakly keyed on ``owner``) once every candidate was tried."""
    chosen = cached_batch_size(owner, key)
    start = 0
    if chosen is None:
        per_item: dict[int, float] = {}
        size = SMALLEST
        while size <= largest and start + 2 * size <= total:
            run(start, start + size)
            per_item[size] = _timed(run, start + size, start + 2 * size, device)
            start += 2 * size
            if per_item[size] > 1.05 * min(per_item.values()):
                break
            size *= 2
        if per_item:
            chosen = min(per_item, key=per_item.get)
            if size > largest or per_item[max(per_item)] > 1.05 * per_item[chosen]:
                _CHOICES.setdefault(owner, {})[key] = chosen  # the probe ran to its end: remember
        else:
            chosen = SMALLEST
    while start < total:
        stop = min(start + chosen, total)
        run(start, stop)
        start = stop
    return chosen
