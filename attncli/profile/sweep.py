"""Sweeps over sequence length: latency and memory per (mode, cache, backend, T), the
analytic cost beside each measurement, and growth fits per series. Never prints:
``run_sweep`` yields rows; the caller renders and saves them.

Modes (letters: B batch, T sequence length):
- prefill: one forward over T tokens (logits for the last one only, as generation does).
- decode, cache on: one decode step at depth T: a (B, 1) forward over a cache holding
  T-1 tokens (filled untimed beforehand).
- decode, cache off: the step that produces token T without a cache: a full forward
  over T tokens, what every no-cache step costs.

Measurement: warm-up runs excluded, ``repeats`` timed runs (median, min, max), device
synchronised around each (CUDA events on a GPU), peak memory reset per row. Memory is
reported as growth over the loaded model (KV cache, activations, scores): weights are
constant and reported beside it.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable, Iterator

import psutil
import torch

from attncli.memory import PeakMemory, is_oom, synchronize
from attncli.model.attention.kernels import recording
from attncli.model.cache import KVCache
from attncli.model.transformer import Transformer
from attncli.profile.breakdown import timing_attention
from attncli.profile.flops import block_skipped_fraction, forward_cost
from attncli.profile.spec import SweepSpec, check_spec


@dataclass
class Row:
    mode: str
    seq_len: int
    batch: int
    cache: bool | None  # None for prefill
    attn: str
    latency_ms: float | None = None  # median
    latency_min_ms: float | None = None
    latency_max_ms: float | None = None
    tokens_per_s: float | None = None
    peak_memory_bytes: int | None = None  # growth over the loaded model during the row's work
    status: str = "ok"  # "ok" | "oom"
    note: str | None = None
    flops: int | None = None
    attention_flops: int | None = None
    weight_bytes: int | None = None
    kv_cache_bytes: int | None = None
    score_bytes: int | None = None  # one layer's eager score matrix; 0 for sdpa rows
    gflops_per_s: float | None = None
    gb_per_s: float | None = None  # weights + KV read once, over the latency
    compile_s: float | None = None  # first warm-up call of a compiled step: compile time, not in the latency
    block_skipped_fraction: float | None = None  # flex rows over T x T: the share of the scores never computed
    tp: int = 1  # tensor-parallel ranks the row ran on
    kernel: str | None = None  # the attention kernel the row ran: sdpa/flash, sdpa/efficient, eager, flex, inductor
    attn_ms: float | None = None  # --breakdown: the attention kernels' part of the latency (median)
    other_ms: float | None = None  # --breakdown: the rest (projections, MLP, norms, head)
    timings_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def series_key(row: dict[str, Any] | Row) -> tuple:
    r = row if isinstance(row, dict) else row.to_dict()
    return (r["mode"], r["cache"], r["attn"], r["batch"])


def series_label(key: tuple) -> str:
    mode, cache, attn, batch = key
    cache_part = "" if cache is None else (" cache" if cache else " no-cache")
    return f"{mode}{cache_part} {attn}" + (f" b{batch}" if batch != 1 else "")


class Timer:
    """Wall time of one call, the device synchronised around it (CUDA events on a GPU)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.device.type == "cuda":
            # on the model's device: events record on the current device's stream, and nothing
            # else makes cuda:N current
            with torch.cuda.device(self.device):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
            return start.elapsed_time(end) / 1e3
        synchronize(self.device)
        t = time.perf_counter()
        fn()
        synchronize(self.device)
        return time.perf_counter() - t


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _predicted_bytes(model: Transformer, mode: str, cache: bool | None, attn: str, batch: int, t: int) -> int:
    return predicted_bytes(model.cfg, model.dtype, mode, cache, attn, batch, t)


def predicted_bytes(cfg, dtype: torch.dtype, mode: str, cache: bool | None, attn: str, batch: int, t: int) -> int:
    """A rough upper bound of the memory a row's work needs beyond the weights: KV cache,
    a few (B, T, max(C, I)) activations, eager's (B, H, T, S) scores and weights."""
    item = dtype.itemsize
    width = max(cfg.hidden_size, cfg.intermediate_size * 2, cfg.q_dim + 2 * cfg.kv_dim)
    q = 1 if (mode == "decode" and cache) else t
    need = 6 * batch * q * width * item + batch * cfg.vocab_size * 4
    need += KVCache.bytes_per_token(cfg, dtype) * batch * t if cache else 0
    if attn == "eager":
        need += 3 * batch * cfg.num_heads * q * t * 4
    return need


def _step_fn(model: Transformer, mode: str, cache: bool | None, attn: str, batch: int, t: int, device,
             compiled: bool = False) -> Callable[[], Any]:
    """The function timed for one row (setup, such as filling a cache, done here, untimed)."""
    g = torch.Generator().manual_seed(t)
    ids = torch.randint(0, model.cfg.vocab_size, (batch, t), generator=g).to(device)  # (B, T)
    if mode == "decode" and cache:
        if compiled:  # the step's own cache, in COMPILE_BUCKET steps: one graph per bucket, not per T
            from attncli.generate.compiled import bucket, compiled_step

            step_c = compiled_step(model)
            kv = step_c.cache_for(batch, bucket(t))
        else:
            kv = KVCache(model.cfg, batch=batch, max_len=t, dtype=model.dtype, device=device)
        if t > 1:
            model(ids[:, :-1], cache=kv, backend=attn, last_only=True)
        depth = t - 1
        last = ids[:, -1:]  # (B, 1)
        if compiled:
            pos = torch.full((batch, 1), depth, device=device)
            # the strides warm() compiled for: a slice's (T, 1) would recompile (and .contiguous()
            # keeps them: a (B, 1) view counts as contiguous whatever its strides)
            last = torch.empty((batch, 1), dtype=ids.dtype, device=device).copy_(last)
            warmed = False

            def compiled_fn():
                nonlocal warmed
                if not warmed:  # compiles (or finds the bucket's graph), loudly past the limit
                    step_c.warm(kv, attn, calls=1)
                    warmed = True
                return step_c.replay(last, pos, depth, kv, attn)  # rewrites slot T-1 each call

            return compiled_fn

        def step():
            kv.length = depth  # the same step again: it overwrites slot T-1
            return model(last, cache=kv, backend=attn, last_only=True)

        return step
    return lambda: model(ids, backend=attn, last_only=True)


def measure(
    model: Transformer, mode: str, cache: bool | None, attn: str, batch: int, t: int, *, repeats: int, warmup: int,
    compile: bool = False, breakdown: bool = False,
) -> Row:
    device = model.device
    row = Row(mode, t, batch, cache, attn, tp=model.tp.world if model.tp is not None else 1)
    cached_step = mode == "decode" and bool(cache)  # one new token over T-1 cached ones
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    cost = forward_cost(model.cfg, batch=batch, t=1 if cached_step else t, offset=t - 1 if cached_step else 0,
                        weight_bytes=weight_bytes, dtype=model.dtype)
    row.flops, row.attention_flops, row.weight_bytes = cost.flops, cost.attention_flops, weight_bytes
    row.kv_cache_bytes = cost.kv_cache_bytes if cached_step else 0
    row.score_bytes = cost.score_bytes if attn == "eager" else 0
    if attn == "flex" and not cached_step:  # one query row has no meaningful block share
        row.block_skipped_fraction = block_skipped_fraction(model.cfg, t)
    if device.type == "cpu":
        need, avail = _predicted_bytes(model, mode, cache, attn, batch, t), psutil.virtual_memory().available
        if need > 0.8 * avail:
            row.status, row.note = "oom", f"not run: needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
            return row
    timer = Timer(device)
    try:
        with torch.inference_mode(), PeakMemory(device) as mem:
            compiled = compile and cached_step
            flex_before = model.flex.compile_s
            fn = _step_fn(model, mode, cache, attn, batch, t, device, compiled)
            # the row's own work from here: the cache it holds counts; the fill's activations
            # and a compiler's working memory do not
            if compiled:
                from attncli.generate.compiled import compiled_step

                row.compile_s = timer(fn)  # the first call compiles; CUDA graphs record on the next ones
                warmup = max(warmup, 2)
                step_c = compiled_step(model)
                mem.rebase(step_c.cache.nbytes)  # what the compile left resident is not the row's
                row.kernel = step_c.kernel(step_c.cache, attn)
            else:
                if attn == "flex":  # flex compiles per shape: the setup's and the first call's compiles, apart
                    timer(fn)
                    row.compile_s = model.flex.compile_s - flex_before
                mem.restart()

            def named(call):  # the row's first call (warm-up, else timed) names the attention kernel
                if row.kernel is not None:
                    return call()
                with recording(model.kernels) as log:
                    out = call()
                row.kernel = log.name
                return out

            for _ in range(warmup):
                named(fn)
            times, attn_times = [], []
            for _ in range(repeats):
                if breakdown and not compiled:  # a compiled step has no layer boundaries to time
                    with timing_attention(model) as clock:
                        times.append(timer(fn))
                    attn_times.append(clock.total)
                else:
                    times.append(timer(partial(named, fn)))
            del fn
    except Exception as err:  # noqa: BLE001 - only out-of-memory is recorded, the rest re-raised
        if not is_oom(err):
            raise
        row.status, row.note = "oom", str(err).splitlines()[0][:200]
        _free(device)
        return row
    _free(device)
    med = statistics.median(times)
    row.timings_ms = [round(x * 1e3, 4) for x in times]
    row.latency_ms, row.latency_min_ms, row.latency_max_ms = med * 1e3, min(times) * 1e3, max(times) * 1e3
    new_tokens = batch * (1 if mode == "decode" else t)  # a no-cache decode step also makes one token
    row.tokens_per_s = new_tokens / med
    if attn_times:
        row.attn_ms = statistics.median(attn_times) * 1e3
        row.other_ms = statistics.median(a - b for a, b in zip(times, attn_times)) * 1e3
    row.peak_memory_bytes = mem.peak_bytes
    row.gflops_per_s = cost.flops / med / 1e9
    row.gb_per_s = (weight_bytes + row.kv_cache_bytes) / med / 1e9
    return row


def check_fits(cfg, dtype: torch.dtype, device: torch.device, spec: SweepSpec, what: str) -> None:
    """Refuse, before a byte is allocated, a model whose weights plus the largest row's KV
    cache and activations cannot fit this device's free memory (on the CPU the OOM killer
    gives no second chance; on a GPU, per device)."""
    from attncli.errors import BadInputError
    from attncli.model.summary import parameter_count

    weights = parameter_count(cfg) * dtype.itemsize
    work = max(predicted_bytes(cfg, dtype, mode, cache, attn, spec.batch, t) for mode, cache, attn, t in spec.points())
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = psutil.virtual_memory().available
    if weights + work > 0.9 * free:
        gib = 2**30
        raise BadInputError(
            f"{what} in {str(dtype).removeprefix('torch.')} needs ~{(weights + work) / gib:.1f} GiB (weights "
            f"{weights / gib:.1f} GiB, KV cache and activations up to {work / gib:.1f} GiB); {device} has "
            f"{free / gib:.1f} GiB free: try --dtype bfloat16, a smaller model, or shorter --seq-lens / --batch")


def warm_up(model: Transformer, spec: SweepSpec) -> None:
    """One untimed, unrecorded call per series at the smallest T before the sweep: the
    libraries' one-time allocations (oneDNN's code and scratch, allocator pools) then land
    in no row, and the first row's peak is its own work (not larger than the next T's).
    Flex is left out: its compile is reported per row."""
    t = min(spec.seq_lens)
    with torch.inference_mode():
        for mode in spec.modes:
            for cache in (spec.caches if mode == "decode" else (None,)):
                for attn in spec.attns:
                    if attn != "flex" and not (spec.compile and mode == "decode" and cache):
                        _step_fn(model, mode, cache, attn, spec.batch, t, model.device)()
    _free(model.device)


def run_sweep(model: Transformer, spec: SweepSpec) -> Iterator[Row]:
    """Yield one Row per point; a series that ran out of memory stops growing."""
    check_spec(spec, model)
    if spec.compile:  # one compiled graph per cache bucket and backend
        from attncli.generate.compiled import allow_graphs, bucket

        allow_graphs(len({(bucket(t), attn) for mode, cache, attn, t in spec.points() if mode == "decode" and cache})
                     + 2)
    stopped: set[tuple] = set()
    for mode, cache, attn, t in spec.points():
        key = (mode, cache, attn, spec.batch)
        if key in stopped:
            continue
        row = measure(model, mode, cache, attn, spec.batch, t, repeats=spec.repeats, warmup=spec.warmup,
                      compile=spec.compile, breakdown=spec.breakdown)
        if row.status == "oom":
            stopped.add(key)
        yield row
