"""Which attention kernel a call runs, named the way users compare them: ``sdpa/flash``,
``sdpa/efficient``, ``sdpa/cudnn``, ``sdpa/math``, ``eager``, ``flex``, and ``inductor``
(the compiled CPU step's own fused loops).

SDPA picks its kernel per call from the inputs (device, dtype, head dim, mask or
is_causal, GQA); ``torch._fused_sdp_choice`` is that very choice, asked for without
running the kernel. Recording is off except when asked for (``recording``): a
generation records its prefill and first decode step, a profile row its first call.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

Tensor = torch.Tensor

_SDPA_NAMES = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}


def sdpa_kernel(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, scale: float,
                gqa: bool) -> str:
    """``sdpa/<kernel>`` SDPA would run for these inputs (q (B, H, T, D), k/v (B, Hkv, S, D))."""
    try:
        choice = torch._fused_sdp_choice(q, k, v, mask, 0.0, is_causal, scale=scale, enable_gqa=gqa)
    except (AttributeError, RuntimeError, TypeError):  # a torch without it, or inputs it refuses
        return "sdpa"
    return f"sdpa/{_SDPA_NAMES.get(int(choice), str(int(choice)))}"


class KernelLog:
    """The kernels the model's attention calls ran while recording, in first-seen order.
    One per model, shared by its layers (as the FlexRunner is)."""

    def __init__(self) -> None:
        self.active = False
        self.seen: list[str] = []

    def add(self, name: str) -> None:
        if name not in self.seen:
            self.seen.append(name)

    @property
    def name(self) -> str | None:
        """What ran, as one string ("sdpa/flash", or "sdpa/flash+eager" for a mix); None if nothing."""
        return "+".join(self.seen) if self.seen else None


@contextmanager
def recording(log: KernelLog) -> Iterator[KernelLog]:
    """Record the calls inside the block into ``log``, emptied first."""
    log.seen, log.active = [], True
    try:
        yield log
    finally:
        log.active = False
