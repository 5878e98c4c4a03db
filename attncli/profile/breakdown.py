"""profile --breakdown: the time of the attention kernels (softmax(q k^T) v, in every layer)
against everything else, measured in the same timed calls, so the quadratic part is seen
directly rather than only as an analytic FLOP share."""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

from attncli.memory import synchronize


class AttentionClock:
    """Context manager each Attention layer enters around its kernel: ``total`` seconds.
    The device is synchronised at both ends (on a GPU that costs what it measures apart)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.total = 0.0

    def __enter__(self):
        synchronize(self.device)
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        synchronize(self.device)
        self.total += time.perf_counter() - self._t


@contextmanager
def timing_attention(model):
    """Attach one clock to every layer's attention for the block; yields it."""
    clock = AttentionClock(model.device)
    for block in model.layers:
        block.attn.clock = clock
    try:
        yield clock
    finally:
        for block in model.layers:
            block.attn.clock = None
