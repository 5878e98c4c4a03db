"""Peak memory on the CPU: the kernel's high-water mark catches a spike that a sampler
would miss, and the sampling fallback still measures."""

from __future__ import annotations

import sys

import pytest
import torch

from attncli import memory
from attncli.memory import PeakMemory

MIB = 2**20


def _spike(mib: int) -> None:
    t = torch.ones(mib * MIB // 4)  # touched: resident
    del t


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_kernel_peak_catches_a_short_spike():
    assert memory.reset_peak_rss()
    with PeakMemory("cpu") as mem:
        _spike(64)  # allocated and freed in well under a millisecond
    assert mem._thread is None  # no sampler running
    assert 60 * MIB <= mem.peak_bytes < 90 * MIB


def test_without_the_kernel_peak_a_sampler_measures(monkeypatch):
    monkeypatch.setattr(memory, "reset_peak_rss", lambda: False)
    with PeakMemory("cpu", interval_s=0.001) as mem:
        t = torch.ones(64 * MIB // 4)
        assert mem.read() >= 60 * MIB  # held while read
        del t
    assert mem._thread is not None and not mem._thread.is_alive()
    assert 60 * MIB <= mem.peak_bytes < 90 * MIB


def test_nothing_allocated_reads_near_zero():
    with PeakMemory("cpu") as mem:
        pass
    assert mem.peak_bytes < 4 * MIB


@pytest.mark.parametrize("err,oom", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
    (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes"), True),
    (RuntimeError("shape mismatch"), False),
    (ValueError("out of memory"), False),
])
def test_is_oom_knows_every_allocator(err, oom):
    from attncli.memory import is_oom

    assert is_oom(err) is oom
