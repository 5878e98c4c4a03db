"""--compare OLD.json: this run's rows against an earlier one's, matched by (mode, cache,
backend, batch, T), with the differences of setup that make a ratio mean little named
(another model, dtype, device or torch), and --fail-above R as a regression gate."""

from __future__ import annotations

from typing import Any

from attncli.profile.sweep import series_key

# (where, key, what it is called): fields that must agree for ratios to compare like with like
_SETUP = [("model", "name", "model"), ("model", "architecture", "architecture"), ("model", "parameters", "parameters"),
          ("model", "dtype", "dtype"), ("env", "device", "device"), ("env", "device_name", "device name"),
          ("env", "torch", "torch")]


def mismatches(doc: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """One line per setup field that differs between the two runs."""
    out = []
    for where, key, label in _SETUP:
        new_v, old_v = doc.get(where, {}).get(key), old.get(where, {}).get(key)
        if new_v != old_v:
            out.append(f"{label} differs: {old_v} then, {new_v} now")
    return out


def pairs(rows: list[dict[str, Any]], old_rows: list[dict[str, Any]]) -> list[tuple[dict, dict, float | None]]:
    """(new row, old row, new / old latency) for every row of this run that the old one has."""
    index = {(*series_key(r), r["seq_len"]): r for r in old_rows}
    out = []
    for r in rows:
        old = index.get((*series_key(r), r["seq_len"]))
        if old is not None:
            ratio = (r["latency_ms"] / old["latency_ms"]) if (r.get("latency_ms") and old.get("latency_ms")) else None
            out.append((r, old, ratio))
    return out


def slower_than(matched: list[tuple[dict, dict, float | None]], limit: float) -> list[tuple[dict, float]]:
    """The rows whose latency grew past ``limit`` x the old one."""
    return [(r, ratio) for r, _, ratio in matched if ratio is not None and ratio > limit]
