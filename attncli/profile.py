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
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import torch

from attncli import __version__
from attncli.attention import check_backend
from attncli.cache import KVCache
from attncli.errors import BadInputError
from attncli.fit import fit_growth
from attncli.flops import attention_crossover, forward_cost
from attncli.memory import PeakMemory, synchronize
from attncli.models.transformer import Transformer

MODES = ("prefill", "decode")


@dataclass(frozen=True)
class SweepSpec:
    seq_lens: list[int]
    batch: int = 1
    modes: tuple[str, ...] = ("prefill", "decode")
    caches: tuple[bool, ...] = (True, False)  # decode only
    attns: tuple[str, ...] = ("sdpa",)
    repeats: int = 3
    warmup: int = 1
    compile: bool = False  # torch.compile the cached decode step (decode rows with the cache)

    def points(self) -> list[tuple[str, bool | None, str, int]]:
        """(mode, cache, attn, T) in run order: series by series, T ascending."""
        out = []
        for mode in self.modes:
            for cache in (self.caches if mode == "decode" else (None,)):
                for attn in self.attns:
                    out.extend((mode, cache, attn, t) for t in sorted(self.seq_lens))
        return out


def parse_seq_lens(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise BadInputError(f"--seq-lens must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise BadInputError(f"--seq-lens must be positive integers, got {text!r}")
    return sorted(set(values))


def doubling(max_seq_len: int, start: int = 128) -> list[int]:
    if max_seq_len < 1:
        raise BadInputError(f"--max-seq-len must be >= 1, got {max_seq_len}")
    out, t = [], min(start, max_seq_len)
    while t < max_seq_len:
        out.append(t)
        t *= 2
    return out + [max_seq_len]


def parse_choice(text: str, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in values if v not in allowed]
    if not values or bad:
        raise BadInputError(f"{flag}: unknown value {', '.join(bad) or repr(text)}; choose from {', '.join(allowed)}")
    return values


def check_spec(spec: SweepSpec, model: Transformer) -> None:
    cfg = model.cfg
    too_long = [t for t in spec.seq_lens if t > cfg.context_length]
    if too_long and not cfg.fully_windowed:
        raise BadInputError(f"seq-len {too_long[0]} is past the model's context of {cfg.context_length} tokens")
    for attn in spec.attns:
        check_backend(attn)
    if spec.batch < 1 or spec.repeats < 1 or spec.warmup < 0:
        raise BadInputError("--batch and --repeats must be >= 1, --warmup >= 0")


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


def is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class Timer:
    """Wall time of one call, the device synchronised around it (CUDA events on a GPU)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.device.type == "cuda":
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
    """A rough upper bound of the memory a row's work needs beyond the weights: KV cache,
    a few (B, T, max(C, I)) activations, eager's (B, H, T, S) scores and weights."""
    cfg = model.cfg
    item = model.dtype.itemsize
    width = max(cfg.hidden_size, cfg.intermediate_size * 2, cfg.q_dim + 2 * cfg.kv_dim)
    q = 1 if (mode == "decode" and cache) else t
    need = 6 * batch * q * width * item + batch * cfg.vocab_size * 4
    need += KVCache.bytes_per_token(cfg, model.dtype) * batch * t if cache else 0
    if attn == "eager":
        need += 3 * batch * cfg.num_heads * q * t * 4
    return need


def _step_fn(model: Transformer, mode: str, cache: bool | None, attn: str, batch: int, t: int, device,
             compiled: bool = False) -> Callable[[], Any]:
    """The function timed for one row (setup, such as filling a cache, done here, untimed)."""
    g = torch.Generator().manual_seed(t)
    ids = torch.randint(0, model.cfg.vocab_size, (batch, t), generator=g).to(device)  # (B, T)
    if mode == "decode" and cache:
        kv = KVCache(model.cfg, batch=batch, max_len=t, dtype=model.dtype, device=device)
        if t > 1:
            model(ids[:, :-1], cache=kv, backend=attn, last_only=True)
        depth = t - 1
        last = ids[:, -1:]  # (B, 1)
        if compiled:
            from attncli.generate import compiled_step

            fn = compiled_step(model).fn
            pos, slot = torch.full((batch, 1), depth, device=device), torch.tensor([depth], device=device)
            return lambda: fn(last, pos, slot, kv, attn)  # static shapes: rewrites slot T-1 each call

        def step():
            kv.length = depth  # the same step again: it overwrites slot T-1
            return model(last, cache=kv, backend=attn, last_only=True)

        return step
    return lambda: model(ids, backend=attn, last_only=True)


def measure(
    model: Transformer, mode: str, cache: bool | None, attn: str, batch: int, t: int, *, repeats: int, warmup: int,
    compile: bool = False,
) -> Row:
    device = model.device
    row = Row(mode, t, batch, cache, attn)
    cached_step = mode == "decode" and bool(cache)  # one new token over T-1 cached ones
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    cost = forward_cost(model.cfg, batch=batch, t=1 if cached_step else t, offset=t - 1 if cached_step else 0,
                        weight_bytes=weight_bytes, dtype=model.dtype)
    row.flops, row.attention_flops, row.weight_bytes = cost.flops, cost.attention_flops, weight_bytes
    row.kv_cache_bytes = cost.kv_cache_bytes if cached_step else 0
    row.score_bytes = cost.score_bytes if attn == "eager" else 0
    if device.type == "cpu":
        need, avail = _predicted_bytes(model, mode, cache, attn, batch, t), psutil.virtual_memory().available
        if need > 0.8 * avail:
            row.status, row.note = "oom", f"not run: needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
            return row
    timer = Timer(device)
    try:
        with torch.inference_mode(), PeakMemory(device) as mem:
            compiled = compile and cached_step
            fn = _step_fn(model, mode, cache, attn, batch, t, device, compiled)
            if compiled:
                row.compile_s = timer(fn)  # the first call compiles; CUDA graphs record on the next ones
                warmup = max(warmup, 2)
            for _ in range(warmup):
                fn()
            times = [timer(fn) for _ in range(repeats)]
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
    row.peak_memory_bytes = mem.peak_bytes
    row.gflops_per_s = cost.flops / med / 1e9
    row.gb_per_s = (weight_bytes + row.kv_cache_bytes) / med / 1e9
    return row


def run_sweep(model: Transformer, spec: SweepSpec) -> Iterator[Row]:
    """Yield one Row per point; a series that ran out of memory stops growing."""
    check_spec(spec, model)
    stopped: set[tuple] = set()
    for mode, cache, attn, t in spec.points():
        key = (mode, cache, attn, spec.batch)
        if key in stopped:
            continue
        row = measure(model, mode, cache, attn, spec.batch, t, repeats=spec.repeats, warmup=spec.warmup,
                      compile=spec.compile)
        if row.status == "oom":
            stopped.add(key)
        yield row


def fits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per series: growth of latency and of peak memory with T."""
    out = []
    keys = []
    for r in rows:
        if series_key(r) not in keys:
            keys.append(series_key(r))
    for key in keys:
        ok = [r for r in rows if series_key(r) == key and r["status"] == "ok"]
        for metric in ("latency_ms", "peak_memory_bytes"):
            fit = fit_growth([r["seq_len"] for r in ok], [r[metric] for r in ok])
            mode, cache, attn, batch = key
            out.append({"mode": mode, "cache": cache, "attn": attn, "batch": batch, "metric": metric, **fit.to_dict()})
    return out


def environment(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {
        "attncli": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).replace("torch.", ""),
        "commit": _commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def model_summary(model: Transformer, name: str, random_weights: bool) -> dict[str, Any]:
    cfg = model.cfg
    return {
        "name": name,
        "architecture": cfg.arch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": cfg.num_layers,
        "heads": cfg.num_heads,
        "kv_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_size": cfg.hidden_size,
        "context_length": cfg.context_length,
        "sliding_window": cfg.sliding_window,
        "dtype": str(model.dtype).replace("torch.", ""),
        "random_weights": random_weights,
        "attention_overtakes_at": attention_crossover(cfg),
    }


def result_document(env: dict, model: dict, rows: list[Row], spec: SweepSpec) -> dict[str, Any]:
    dicts = [r.to_dict() for r in rows]
    return {"env": env, "model": model, "spec": asdict(spec), "rows": dicts, "fits": fits(dicts)}


# ---- sweep definitions (profiles/*.toml, shipped as attncli.profiles) ----
PROFILE_KEYS = {"description", "mode", "cache", "attn", "seq_lens", "max_seq_len", "batch", "repeats", "warmup"}


def _profiles_dir():
    """Installed: the attncli.profiles package; a source checkout: the repo's profiles/."""
    from importlib import resources

    try:
        return resources.files("attncli.profiles")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "profiles"


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in _profiles_dir().iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str) -> dict[str, Any]:
    """A sweep definition by name (shipped with attncli) or by path to a .toml file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise BadInputError("reading --profile files on Python 3.10 needs tomli: pip install tomli") from None
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise BadInputError(f"--profile {name_or_path}: no such file")
        text = path.read_text(encoding="utf-8")
    else:
        entry = _profiles_dir() / f"{name_or_path}.toml"
        if not entry.is_file():
            raise BadInputError(f"unknown profile {name_or_path!r}; shipped: {', '.join(profile_names())} (or a path to a .toml)")
        text = entry.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BadInputError(f"--profile {name_or_path}: not valid TOML ({err})") from None
    unknown = sorted(set(data) - PROFILE_KEYS)
    if unknown:
        raise BadInputError(f"--profile {name_or_path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(PROFILE_KEYS))}")
    return data
