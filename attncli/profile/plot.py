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
    """Two log-log panels: latency and peak memory against T, one line per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, mem) = plt.subplots(1, 2, figsize=(12, 4.8))
    series: dict[tuple, list[dict]] = {}
    for r in doc["rows"]:
        if r["status"] == "ok":
            series.setdefault(series_key(r), []).append(r)
    for key, rows in series.items():
        ts = [r["seq_len"] for r in rows]
        lat.plot(ts, [r["latency_ms"] for r in rows], marker="o", label=series_label(key))
        if any(r["peak_memory_bytes"] for r in rows):
            mem.plot(ts, [max(r["peak_memory_bytes"], 1) / 2**20 for r in rows], marker="o", label=series_label(key))
    for ax, ylabel in ((lat, "latency (ms)"), (mem, "peak memory growth (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    model, env = doc["model"], doc["env"]
    fig.suptitle(f"{model['name']} ({model['architecture']}, {model['dtype']}) on {env['device_name']} — attncli profile")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
