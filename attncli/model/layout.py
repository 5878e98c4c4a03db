"""How each weight matrix is stored in memory, chosen for the products decode runs.

A parameter is always seen as (out, in) and used through ``F.linear``; what changes is
its storage: "out_in" (contiguous rows of the (out, in) matrix, PyTorch's default) or
"in_out" (a contiguous (in, out) matrix seen through a transposed view). For the
matrix-vector products of batch-1 decode the layout decides how fast the weights stream.
Measured on the 2-core Zen 3 CPU this project runs on with examples/bench_layouts.py
(float32, x of shape (1, in), each matrix read from memory, not cache), GB/s as
(out, in) storage -> (in, out) storage:
    GPT-2 LM head (50257, 768) 13.9 -> 21.3; QKV (2304, 768) 11.1 -> 17.2;
    MLP up (3072, 768) 13.3 -> 17.3; attn out (768, 768) 12.0 -> 13.4; MLP down (768, 3072) 14.8 -> 14.1
    SmolLM2 LM head (49152, 576) 11.1 -> 19.8; gate/up (3072, 576) 10.4 -> 18.5;
    QKV (960, 576) 10.8 -> 14.4; attn out (576, 576) 9.6 -> 10.4; down (576, 1536) 15.1 -> 12.1
So on the CPU every matrix at least as wide as it is tall is stored (in, out), and only
the taller ones (the MLP down projection) keep (out, in) ("by_shape"). On top of that,
"split" (the CPU default) cuts each product of one or two rows (decode) into one block
per thread, each a view of that same storage (attncli.model.linear: another 1.2-1.7x per
matrix in decode), and sends products of more rows (prefill, no-cache decode) to oneDNN
(1.1-1.9x a forward at 3-512 rows). On CUDA, cuBLAS reads both layouts at full speed: nothing changes there.

A tied LM head shares its storage with the embedding, whose lookups then read strided
rows (measured: 12.9 ms against 8.1 ms for 1,024 GPT-2 tokens, beside a ~1 s prefill).

All of the above was measured on AMD (Zen 3), where MKL takes its generic code paths and
runs a matrix-vector product on one core. On an Intel CPU (measured: a 2-vCPU AVX-512 Xeon)
MKL threads those products itself, and both the split and oneDNN cost time: whole forwards,
SmolLM2-135M shape, ms for split policy / "in_out" with plain F.linear:
    1 row 45.7 / 41.3, 128 rows 264 / 162, 512 rows 880 / 635;
cached decode 23.2 / 27.6 tok/s (GPT-2 shape 35.9 / 40.9). So "auto" on an Intel CPU is
"in_out": every matrix stored (in, out), every product through F.linear (MKL).
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn

LAYOUTS = ("auto", "split", "by_shape", "out_in", "in_out")


def policy(device: torch.device, requested: str | None = None, dtype: torch.dtype | None = None) -> str:
    """"auto" is, on the CPU in float32, "in_out" on an Intel CPU with MKL and "split"
    elsewhere (storage by shape: out >= in stored (in, out); products of one or two rows
    split across threads, larger ones through oneDNN), and "out_in" off the CPU. In
    bfloat16 / float16 the CPU keeps "out_in" and F.linear too: the split's partial sums and another kernel's blocking each round where the reference does
    not, and greedy tokens drift from transformers' (measured on the embedded model: from
    the 26th token with the cache); reduced precision on the CPU is for parity, not speed."""
    requested = requested or os.environ.get("ATTNCLI_LAYOUT", "auto")
    if requested not in LAYOUTS:
        from attncli.errors import BadInputError

        raise BadInputError(f"unknown weight layout {requested!r}; use {', '.join(LAYOUTS)}")
    if requested == "auto":
        if device.type != "cpu" or dtype not in (None, torch.float32):
            return "out_in"
        return "in_out" if cpu_vendor() == "intel" and torch.backends.mkl.is_available() else "split"
    return requested


@functools.lru_cache(maxsize=1)
def cpu_vendor() -> str:
    """"intel", "amd" or "other", from /proc/cpuinfo (Linux); "other" where it cannot be read.
    MKL's fast matrix-vector code is Intel-only, which decides the CPU policy."""
    return {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(cpuinfo_field("vendor_id"), "other")


def cpuinfo_field(name: str) -> str | None:
    """The first value of ``name`` in /proc/cpuinfo (Linux), or None where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def transposed_names(model: nn.Module, device: torch.device, requested: str | None = None) -> set[str]:
    """Names of the (out, in) parameters to store (in, out) under the policy."""
    rule = policy(device, requested, _dtype(model))
    if rule == "out_in":
        return set()
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            out_f, in_f = module.weight.shape
            if rule == "in_out" or (rule in ("split", "by_shape") and out_f >= in_f):
                names.add(f"{name}.weight")
    return names


def _dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters()), None)


def is_transposed(t: torch.Tensor) -> bool:
    """True for an (out, in) view of contiguous (in, out) storage."""
    return t.dim() == 2 and t.stride() == (1, t.shape[0]) and t.shape[0] > 1


def empty_weight(shape: tuple[int, int], *, transposed: bool, dtype: torch.dtype, device) -> torch.Tensor:
    """An uninitialised (out, in) tensor in the chosen storage."""
    if transposed:
        return torch.empty(shape[1], shape[0], dtype=dtype, device=device).t()
    return torch.empty(shape, dtype=dtype, device=device)


def apply(model: nn.Module, names: set[str]) -> None:
    """Re-store the named parameters (in, out), in place of the module's tensor (one
    matrix copied at a time). For models built in memory; loading writes the chosen
    storage directly."""
    with torch.no_grad():
        for name in sorted(names):
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name)
            old = getattr(module, attr)
            if is_transposed(old):
                continue
            new = nn.Parameter(old.detach().t().contiguous().t(), requires_grad=False)
            for m in model.modules():  # every holder: a tied head and embedding share one
                for key, p in list(m._parameters.items()):
                    if p is old:
                        m._parameters[key] = new


def set_split(model: nn.Module, device: torch.device, requested: str | None = None) -> None:
    """Turn the CPU product routing (split / oneDNN, attncli.model.linear) on or off for every
    layer. Never on another device, whatever ATTNCLI_LAYOUT asks: the split cuts a product by
    the CPU's thread count, which means nothing to cuBLAS (it would only add launches)."""
    split = device.type == "cpu" and policy(device, requested, _dtype(model)) == "split"
    for module in model.modules():
        if hasattr(module, "split_rows"):
            module.split_rows = split
