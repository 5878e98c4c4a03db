"""What `attncli profile` shows: a table per mode, the fits, a log-log terminal chart,
and the comparison with an earlier run. Reads row dicts; knows nothing of torch."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from attncli.profile.sweep import series_key, series_label
from attncli.console import human_bytes

MARKERS = "o+x*#@%&=~"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def mode_tables(rows: list[dict[str, Any]]) -> list[Table]:
    tables = []
    for mode in ("prefill", "decode"):
        sel = [r for r in rows if r["mode"] == mode]
        if not sel:
            continue
        what = "one forward over T tokens" if mode == "prefill" else "one new token at context T"
        t = Table(title=f"{mode}: {what}", title_justify="left")
        for col, just in [("series", "left"), ("T", "right"), ("latency ms (min-max)", "right"), ("tok/s", "right"),
                          ("peak mem", "right"), ("KV", "right"), ("scores/layer", "right"),
                          ("GFLOP", "right"), ("attn %", "right"), ("GFLOP/s", "right"), ("GB/s", "right"),
                          ("status", "left")]:
            t.add_column(col, justify=just)
        for r in sel:
            if r["status"] != "ok":
                t.add_row(series_label(series_key(r)), str(r["seq_len"]), *["-"] * 9,
                          f"[red]{r['status']}[/]" + (f" ({r['note']})" if r.get("note") else ""))
                continue
            spread = f"{r['latency_ms']:.2f} ({r['latency_min_ms']:.2f}-{r['latency_max_ms']:.2f})"
            share = 100 * r["attention_flops"] / r["flops"] if r["flops"] else None
            t.add_row(series_label(series_key(r)), str(r["seq_len"]), spread, _num(r["tokens_per_s"], ",.1f"),
                      human_bytes(r["peak_memory_bytes"]), human_bytes(r["kv_cache_bytes"]) if r["kv_cache_bytes"] else "-",
                      human_bytes(r["score_bytes"]) if r["score_bytes"] else "-",
                      _num(r["flops"] / 1e9, ",.2f"), _num(share, ".0f"), _num(r["gflops_per_s"], ",.1f"),
                      _num(r["gb_per_s"], ",.1f"), "ok")
        tables.append(t)
    return tables


def fit_table(fits: list[dict[str, Any]]) -> Table:
    t = Table(title="growth with T: latency and memory ~ T^k, and a*T^2 + b*T + c", title_justify="left")
    for col in ("series", "metric", "k (log-log)", "a", "b", "c", "R² (quad)", "points"):
        t.add_column(col, justify="left" if col in ("series", "metric") else "right")
    for f in fits:
        if f["points"] < 2:
            continue
        key = (f["mode"], f["cache"], f["attn"], f["batch"])
        t.add_row(series_label(key), "latency ms" if f["metric"] == "latency_ms" else "peak mem B",
                  _num(f["exponent"], ".2f"), _num(f["a"], ".3g"), _num(f["b"], ".3g"), _num(f["c"], ".3g"),
                  _num(f["r2_quadratic"], ".4f"), str(f["points"]))
    return t


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


def compare_table(rows: list[dict[str, Any]], old_rows: list[dict[str, Any]], old_name: str) -> Table:
    """New latency over old, per matching row: < 1 means faster now."""
    index = {(*series_key(r), r["seq_len"]): r for r in old_rows}
    t = Table(title=f"compared with {old_name} (ratio = new / old latency; < 1 is faster)", title_justify="left")
    for col in ("series", "T", "old ms", "new ms", "ratio", "old mem", "new mem"):
        t.add_column(col, justify="left" if col == "series" else "right")
    for r in rows:
        old = index.get((*series_key(r), r["seq_len"]))
        if old is None:
            continue
        ratio = (r["latency_ms"] / old["latency_ms"]) if (r.get("latency_ms") and old.get("latency_ms")) else None
        style = "" if ratio is None else ("green" if ratio < 0.95 else "red" if ratio > 1.05 else "")
        t.add_row(series_label(series_key(r)), str(r["seq_len"]), _num(old.get("latency_ms"), ".2f"),
                  _num(r.get("latency_ms"), ".2f"),
                  f"[{style}]{ratio:.3f}[/]" if style else _num(ratio, ".3f"),
                  human_bytes(old.get("peak_memory_bytes")), human_bytes(r.get("peak_memory_bytes")))
    return t
