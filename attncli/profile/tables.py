"""What `attncli profile` shows: a table per mode, the fits, a log-log terminal chart,
and the comparison with an earlier run. Reads row dicts; knows nothing of torch."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from attncli.profile.sweep import series_key, series_label
from attncli.console import Col, fitted_table, human_bytes

MARKERS = "o+x*#@%&=~"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


_MODE_COLS = [Col("series", "left"), Col("T"), Col("latency ms (min-max)"), Col("tok/s", drop=2), Col("peak mem"),
              Col("KV", drop=4), Col("scores/layer", drop=5), Col("GFLOP", drop=6), Col("attn %", drop=3),
              Col("GFLOP/s", drop=7), Col("GB/s", drop=8), Col("kernel", "left", drop=9), Col("status", "left", drop=1)]


def mode_tables(rows: list[dict[str, Any]], *, width: int | None = None) -> list[Table]:
    tables = []
    for mode in ("prefill", "decode"):
        sel = [r for r in rows if r["mode"] == mode]
        if not sel:
            continue
        what = "one forward over T tokens" if mode == "prefill" else "one new token at context T"
        split = any(r.get("attn_ms") is not None for r in sel)  # --breakdown
        cols = _MODE_COLS[:3] + ([Col("attn ms"), Col("other ms")] if split else []) + _MODE_COLS[3:]
        cells = []
        for r in sel:
            if r["status"] != "ok":
                cells.append([series_label(series_key(r)), str(r["seq_len"]), *["-"] * (12 if split else 10),
                              f"[red]{r['status']}[/]" + (f" ({r['note']})" if r.get("note") else "")])
                continue
            spread = f"{r['latency_ms']:.2f} ({r['latency_min_ms']:.2f}-{r['latency_max_ms']:.2f})"
            share = 100 * r["attention_flops"] / r["flops"] if r["flops"] else None
            parts = [_num(r.get("attn_ms"), ".2f"), _num(r.get("other_ms"), ".2f")] if split else []
            cells.append([series_label(series_key(r)), str(r["seq_len"]), spread, *parts, _num(r["tokens_per_s"], ",.1f"),
                          human_bytes(r["peak_memory_bytes"]),
                          human_bytes(r["kv_cache_bytes"]) if r["kv_cache_bytes"] else "-",
                          human_bytes(r["score_bytes"]) if r["score_bytes"] else "-",
                          _num(r["flops"] / 1e9, ",.2f"), _num(share, ".0f"), _num(r["gflops_per_s"], ",.1f"),
                          _num(r["gb_per_s"], ",.1f"), r.get("kernel") or "-", "ok"])
        tables.append(fitted_table(cols, cells, title=f"{mode}: {what}", width=width))
    return tables


_METRICS = {"latency_ms": "latency ms", "peak_memory_bytes": "peak mem B", "attn_ms": "attention ms",
            "other_ms": "the rest ms"}
_FIT_COLS = [Col("series", "left"), Col("metric", "left"), Col("k (log-log)"), Col("a", drop=3), Col("b", drop=2),
             Col("c", drop=4), Col("R² (quad)", drop=1), Col("points", drop=5)]


def fit_table(fits: list[dict[str, Any]], *, width: int | None = None) -> Table:
    cells = []
    for f in fits:
        if f["points"] < 2:
            continue
        key = (f["mode"], f["cache"], f["attn"], f["batch"])
        cells.append([series_label(key), _METRICS.get(f["metric"], f["metric"]),
                      _num(f["exponent"], ".2f"), _num(f["a"], ".3g"), _num(f["b"], ".3g"), _num(f["c"], ".3g"),
                      _num(f["r2_quadratic"], ".4f"), str(f["points"])])
    return fitted_table(_FIT_COLS, cells, title="growth with T: latency and memory ~ T^k, and a*T^2 + b*T + c",
                        width=width)


def chart(rows: list[dict[str, Any]], *, width: int = 64, height: int = 18) -> str:
    """Latency against T, both axes logarithmic, one marker per series (plain text)."""
    series: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        if r["status"] == "ok" and r["latency_ms"]:
            series.setdefault(series_key(r), []).append((r["seq_len"], r["latency_ms"]))
    pts = [p for s in series.values() for p in s]
    if len(pts) < 2:
        return ""
    lx = [math.log10(x) for x, _ in pts]
    ly = [math.log10(y) for _, y in pts]
    x0, x1 = min(lx), max(lx) if max(lx) > min(lx) else min(lx) + 1
    y0, y1 = min(ly), max(ly) if max(ly) > min(ly) else min(ly) + 1
    grid = [[" "] * width for _ in range(height)]
    legend = []
    for i, (key, sp) in enumerate(series.items()):
        mark = MARKERS[i % len(MARKERS)]
        legend.append(f"{mark} {series_label(key)}")
        for x, y in sp:
            col = round((math.log10(x) - x0) / (x1 - x0) * (width - 1))
            row = height - 1 - round((math.log10(y) - y0) / (y1 - y0) * (height - 1))
            grid[row][col] = mark if grid[row][col] in (" ", mark) else "?"
    top, bottom = f"{10 ** y1:.3g} ms", f"{10 ** y0:.3g} ms"
    pad = max(len(top), len(bottom))
    lines = ["latency vs T (log-log; ? = overlapping series)"]
    for i, line in enumerate(grid):
        label = top if i == 0 else bottom if i == height - 1 else ""
        lines.append(f"{label:>{pad}} |" + "".join(line))
    lines.append(" " * pad + " +" + "-" * width)
    left, right = f"T={10 ** x0:.0f}", f"T={10 ** x1:.0f}"
    lines.append(" " * (pad + 2) + left + " " * max(1, width - len(left) - len(right)) + right)
    lines.append("  " + "   ".join(legend))
    return "\n".join(lines)


_COMPARE_COLS = [Col("series", "left"), Col("T"), Col("old ms"), Col("new ms"), Col("ratio"), Col("old mem", drop=2),
                 Col("new mem", drop=1)]


def compare_table(matched: list[tuple[dict, dict, float | None]], old_name: str, *, width: int | None = None) -> Table:
    """New latency over old, per matching row (attncli.profile.compare.pairs): < 1 means faster now."""
    cells = []
    for r, old, ratio in matched:
        style = "" if ratio is None else ("green" if ratio < 0.95 else "red" if ratio > 1.05 else "")
        cells.append([series_label(series_key(r)), str(r["seq_len"]), _num(old.get("latency_ms"), ".2f"),
                      _num(r.get("latency_ms"), ".2f"), f"[{style}]{ratio:.3f}[/]" if style else _num(ratio, ".3f"),
                      human_bytes(old.get("peak_memory_bytes")), human_bytes(r.get("peak_memory_bytes"))])
    return fitted_table(_COMPARE_COLS, cells, title=f"compared with {old_name} (ratio = new / old latency; < 1 is faster)",
                        width=width)
