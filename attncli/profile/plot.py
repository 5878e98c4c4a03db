"""PNG plots of a profile run (matplotlib, the optional `attncli[plot]` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attncli.atomic import write_atomic
from attncli.errors import BadInputError
from attncli.profile.sweep import series_key, series_label


def require_matplotlib() -> None:
    """Fail before a sweep, not after it, when --plot cannot be honoured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BadInputError("--plot needs matplotlib: pip install 'attncli[plot]'") from None


def plot_profile(doc: dict[str, Any], path: Path) -> None:
    """Two log-log panels: latency and peak memory against T, one line per series, each with
    its fitted a*T^2 + b*T + c (dashed) when there is one; T and T^2 guide lines through the
    first point; the T at which attention FLOPs overtake the rest (analytic), when in range;
    with --breakdown, the attention kernels' time apart (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, mem) = plt.subplots(1, 2, figsize=(12, 4.8))
    series: dict[tuple, list[dict]] = {}
    for r in doc["rows"]:
        if r["status"] == "ok":
            series.setdefault(series_key(r), []).append(r)
    fits = {(f["mode"], f["cache"], f["attn"], f["batch"], f["metric"]): f for f in doc.get("fits", [])}
    all_t = sorted({r["seq_len"] for rows in series.values() for r in rows})
    for key, rows in series.items():
        ts = [r["seq_len"] for r in rows]
        (line,) = lat.plot(ts, [r["latency_ms"] for r in rows], marker="o", label=series_label(key))
        fit = fits.get((*key, "latency_ms"))
        if fit and fit.get("a") is not None and len(ts) >= 3:
            grid = [ts[0] * (ts[-1] / ts[0]) ** (i / 40) for i in range(41)]
            lat.plot(grid, [fit["a"] * x * x + fit["b"] * x + fit["c"] for x in grid], ls="--", lw=1,
                     color=line.get_color(), alpha=0.7)
        if all(r.get("attn_ms") for r in rows):
            lat.plot(ts, [r["attn_ms"] for r in rows], ls=":", marker=".", color=line.get_color(),
                     label=series_label(key) + ": attention kernels")
        if any(r["peak_memory_bytes"] for r in rows):
            mem.plot(ts, [max(r["peak_memory_bytes"], 1) / 2**20 for r in rows], marker="o", label=series_label(key))
    first = [rows[0] for rows in series.values() if rows]
    if first and len(all_t) > 1:
        t0, y0 = min((r["seq_len"], r["latency_ms"]) for r in first)
        span = [t0, all_t[-1]]
        lat.plot(span, [y0, y0 * span[1] / t0], color="grey", lw=0.8, ls="-.", label="~T")
        lat.plot(span, [y0, y0 * (span[1] / t0) ** 2], color="black", lw=0.8, ls="-.", label="~T²")
    crossover = doc["model"].get("attention_overtakes_at")
    if crossover and all_t and all_t[0] <= crossover <= all_t[-1]:
        lat.axvline(crossover, color="red", lw=0.8, ls=":", label=f"attention FLOPs overtake at T≈{crossover:,}")
    for ax, ylabel in ((lat, "latency (ms)"), (mem, "peak memory growth (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    model, env = doc["model"], doc["env"]
    fig.suptitle(f"{model['name']} ({model['architecture']}, {model['dtype']}) on {env['device_name']} — attncli profile")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
