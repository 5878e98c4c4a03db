"""The tensor-parallel group this process belongs to, and the two collectives the model needs.

A process is in a group when a launcher (torchrun, or ``--tp N``, which uses torch's own
elastic launcher) started it with WORLD_SIZE > 1. The group is gloo on the CPU and NCCL on
CUDA (one GPU per rank, cuda:LOCAL_RANK). The collectives are torch's functional ones
(``torch.distributed._functional_collectives``): plain ops to torch.compile, so a compiled
decode step stays one graph with them inside.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from attncli.distributed.env import launched_world

Tensor = torch.Tensor


@dataclass(frozen=True)
class TP:
    world: int
    rank: int
    backend: str  # "gloo" | "nccl"
    device: torch.device  # the rank's: cuda:LOCAL_RANK under NCCL, else the CPU

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def all_reduce(self, x: Tensor) -> Tensor:
        """The sum over ranks of ``x`` (each rank's partial product)."""
        from torch.distributed import _functional_collectives as funcol

        return funcol.all_reduce(x, "sum", dist.group.WORLD)

    def same_int(self, value: int) -> int:
        """Rank 0's ``value`` on every rank (a sampling seed: every rank must draw the same token)."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return int(box[0])

    def all_gather_last(self, x: Tensor) -> Tensor:
        """Each rank's (..., n) concatenated along the last dim: (..., world * n)."""
        from torch.distributed import _functional_collectives as funcol

        gather = getattr(funcol, "all_gather_single", None) or funcol.all_gather_tensor  # the newer name first
        parts = gather(x.movedim(-1, 0).contiguous(), 0, dist.group.WORLD)  # (world*n, ...)
        return parts.movedim(0, -1)


_CURRENT: TP | None = None


def current(device: str | None = None) -> TP | None:
    """The group of this process, set up on first use; None outside a launched group.
    ``device`` (a --device value) decides the backend the first time: NCCL for CUDA (and
    for "auto" where CUDA is present), gloo otherwise; ``--tp N`` passes its choice down."""
    global _CURRENT
    if _CURRENT is None and launched_world() > 1:
        _CURRENT = _init(_wants_cuda(device))
    return _CURRENT


def _wants_cuda(device: str | None) -> bool:
    chosen = os.environ.get("ATTNCLI_TP_DEVICE")
    if chosen:
        return chosen.startswith("cuda")
    if device is None or device == "auto":
        return torch.cuda.is_available()
    return device.startswith("cuda")


def _init(use_cuda: bool) -> TP:
    backend = "nccl" if use_cuda else "gloo"
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        atexit.register(shutdown)  # torn down before the interpreter is (attncli.cli.run exits a rank early)
    tp = TP(dist.get_world_size(), dist.get_rank(), backend, device)
    # the first collectives set up their connections and buffers (~0.8 s on gloo): here,
    # not inside a timed prefill
    probe = torch.zeros(2, device=device)
    tp.all_reduce(probe).sum().item()  # .item(): the collective has completed
    tp.all_gather_last(probe[None]).sum().item()
    return tp


def place(cfg, device: str, tp="auto"):
    """The group a model is built for (``tp``: a TP, None, or "auto": this process's) and the
    device it goes on: a rank's own when ``device`` is "auto". Refuses, before anything is
    built, a model that does not split over the group."""
    from attncli.model.build import resolve_device

    if tp == "auto":
        tp = current(device)
    if tp is None:
        return None, resolve_device(device)
    from attncli.distributed.shard import check_split

    check_split(cfg, tp.world)
    return tp, tp.device if device == "auto" else resolve_device(device)


def shutdown() -> None:
    global _CURRENT
    if _CURRENT is not None and dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None
