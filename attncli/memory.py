"""Peak memory of a piece of work, measured the same way by generate and profile.

CUDA: the allocator's own high-water mark (``max_memory_allocated``) after a reset,
minus what was allocated before: exact, no sampling. CPU on Linux: the kernel's own
high-water mark of the process RSS (VmHWM, reset at entry through /proc/self/clear_refs),
minus the RSS before the work (after freed heap memory is handed back to the OS): exact
too, and free. Elsewhere: RSS sampled by a background thread every 10 ms, an estimate
(short spikes between samples can be missed). A sampler is not used where the kernel
keeps the peak: on 2 cores one polling every 2 ms cost 7% of cached decode speed and up
to 14% of uncached (measured, SmolLM-135M shape).
"""

from __future__ import annotations

import threading

import psutil
import torch


_OOM_TEXTS = ("out of memory", "can't allocate memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def is_oom(err: BaseException) -> bool:
    """An allocation failure, on any device: torch's OutOfMemoryError, or the RuntimeError a
    CPU allocation, cuBLAS or cuDNN raises when its workspace cannot be had."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(t in str(err).lower() for t in _OOM_TEXTS)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so a host timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def release_freed_memory() -> None:
    """Hand memory freed earlier back to the OS (glibc's malloc_trim), so that the next
    measurement's RSS baseline is not padded by heap blocks it would simply reuse: without
    it a row after a bigger one shows almost no growth. A no-op where there is no glibc."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


class PeakMemory:
    """Context manager: ``peak_bytes`` is the growth over the baseline at entry."""

    def __init__(self, device: torch.device | str, interval_s: float = 0.01):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.reserved_bytes = 0  # CUDA: peak reserved by the caching allocator
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self._base_reserved = torch.cuda.memory_reserved(self.device)
        else:
            release_freed_memory()
            self._proc = psutil.Process()
            self._base = self._proc.memory_info().rss
            self._max = self._base
            self._kernel_peak = reset_peak_rss()
            if not self._kernel_peak:
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._proc.memory_info().rss)
            self._stop.wait(self.interval_s)  # wakes at once on exit

    def restart(self) -> None:
        """Forget the peak so far (not the baseline): what stays allocated counts, what was
        only passing through (a cache fill's activations) does not."""
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            release_freed_memory()
            self._kernel_peak = reset_peak_rss()
            self._max = self._proc.memory_info().rss

    def rebase(self, held_bytes: int) -> None:
        """On the CPU, count from here as if only ``held_bytes`` had been allocated since entry
        (a row's KV cache): a compiler's code and caches stay resident in the process but
        are no part of the row's work (they were a compiled row's first ~70-100 MiB). On a
        GPU, restart(): the compiler's leftovers are host memory there, and a CUDA graph's
        pool is the step's own memory."""
        self.restart()
        if self.device.type != "cuda":
            self._base = self._proc.memory_info().rss - held_bytes
            self._max = self._base + held_bytes

    def read(self) -> int:
        """The peak so far (callable inside the block, e.g. for partial stats)."""
        if self.device.type == "cuda":
            return max(0, torch.cuda.max_memory_allocated(self.device) - self._base)
        now = (peak_rss() if self._kernel_peak else None) or self._proc.memory_info().rss
        self._max = max(self._max, now)
        return max(0, self._max - self._base)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.reserved_bytes = max(0, torch.cuda.max_memory_reserved(self.device) - self._base_reserved)
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
        self.peak_bytes = self.read()


def reset_peak_rss() -> bool:
    """Set the kernel's peak-RSS mark (VmHWM) to the current RSS ("5" touches nothing
    else). False where there is no such file or it is not writable (not Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return peak_rss() is not None


def peak_rss() -> int | None:
    """The process's peak RSS in bytes since the last reset (Linux VmHWM), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
