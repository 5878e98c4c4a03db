"""What every command shows with: the consoles (stdout, stderr), byte and count formatting,
the one-line error, JSON output, and the info table. No model code here."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Piped or redirected, stdout has no width to keep to: tables print at the width they need
# (nothing cut); a terminal keeps its own, and tables drop secondary columns to fit it.
_WIDE = 4096
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else _WIDE)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def layout_width() -> int:
    """The width to lay grids and charts out for: the terminal's, or in a pipe $COLUMNS
    (else 80), as before: a grid has no natural width, unlike a table."""
    if out.width < _WIDE:
        return out.width
    try:
        return max(40, int(os.environ.get("COLUMNS", "80")))
    except ValueError:
        return 80


@dataclass(frozen=True)
class Col:
    name: str
    justify: str = "right"
    drop: int = 0  # 0: always shown; higher numbers are dropped first when the table does not fit


def fitted_table(cols: list[Col], rows: list[list[str]], *, title: str, width: int | None = None,
                 console: Console | None = None) -> Table:
    """A table that never cuts a cell: columns that make it wider than ``width`` (the
    console's) are left out, the most droppable first, and the caption names them and how
    to see them. Every cell is kept whole (no wrapping inside a number)."""
    console = console or out
    width = width or console.width
    keep = list(range(len(cols)))

    def build(idx: list[int]) -> Table:
        t = Table(title=title, title_justify="left")
        for i in idx:
            t.add_column(cols[i].name, justify=cols[i].justify, no_wrap=True)
        for r in rows:
            t.add_row(*(r[i] for i in idx))
        return t

    table = build(keep)
    hidden: list[str] = []
    while console.measure(table, options=console.options.update_width(_WIDE)).maximum > width:
        droppable = [i for i in keep if cols[i].drop > 0]
        if not droppable:
            break
        worst = max(droppable, key=lambda i: (cols[i].drop, i))
        keep.remove(worst)
        hidden.append(cols[worst].name)
        table = build(keep)
    if hidden:
        table.caption = (f"hidden at this width: {', '.join(reversed(hidden))} "
                         "(a wider terminal, or a pipe, or --json / --csv show them)")
        table.caption_justify = "left"
    return table


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def error_line(message: str) -> None:
    # The message is data, not markup: "[plot]" or a shape "[64, 32]" must print as written.
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def write(text: str) -> None:
    """Text for scripts (markdown, CSV) on stdout, as is: not rich's to wrap or style."""
    sys.stdout.write(text)
    sys.stdout.flush()


def print_json(obj: Any) -> None:
    # Plain print, not rich: scripts parse this.
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


_INFO_ROWS = [
    ("architecture", "architecture", str),
    ("parameters", "parameters", lambda v: f"{v:,} ({human_count(v)})"),
    ("layers", "layers", str),
    ("hidden size", "hidden_size", str),
    ("heads / kv heads", None, None),
    ("head dim", "head_dim", str),
    ("MLP width", "intermediate_size", str),
    ("vocab", "vocab_size", lambda v: f"{v:,}"),
    ("context length", "context_length", lambda v: f"{v:,}"),
    ("position", "position", str),
    ("sliding window", "sliding_window", lambda v: "none" if v is None else f"{v:,}"),
    ("tied embeddings", "tied_embeddings", lambda v: "yes" if v else "no"),
    ("checkpoint dtype", "checkpoint_dtype", lambda v: v or "unknown"),
    ("run dtype", "dtype", str),
    ("weights", "weight_bytes", human_bytes),
    ("KV cache / token", "kv_cache_bytes_per_token", human_bytes),
]


def _layer_list(layers: list[int]) -> str:
    return ", ".join(map(str, layers)) + f" ({len(layers)})"


def info_pairs(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of `attncli info`, as the table and the markdown show them."""
    pairs = []
    for label, key, fmt in _INFO_ROWS:
        pairs.append((label, f"{info['heads']} / {info['kv_heads']}" if key is None else fmt(info[key])))
    if info["sliding_layers"] and len(info["sliding_layers"]) != info["layers"]:
        pairs.append(("sliding layers", _layer_list(info["sliding_layers"])))
    if info.get("nope_layers"):
        pairs.append(("no-RoPE layers", _layer_list(info["nope_layers"])))
    caps = [f"{name} {info[key]:g}" for name, key in (("scores", "attn_softcap"), ("logits", "final_softcap"))
            if info.get(key) is not None]
    if caps:
        pairs.append(("soft-caps", ", ".join(caps)))
    if info.get("norms", "pre") != "pre" or info.get("parallel_residual"):
        pairs.append(("norms", info["norms"] + (", parallel residual" if info.get("parallel_residual") else "")))
    if info.get("not_loaded"):
        skipped = info["not_loaded"]
        pairs.append(("not loaded", f"{skipped['tensors']} tensors, {human_bytes(skipped['bytes'])}: {skipped['what']}"))
    ctx = f"at context {info['context']:,}" + (f", batch {info['batch']}" if info["batch"] != 1 else "")
    pairs.append((f"KV cache {ctx}", human_bytes(info["kv_cache_bytes"])))
    pairs.append((f"memory {ctx}", f"{human_bytes(info['memory_bytes'])} (weights + KV cache)"))
    if info.get("tp", 1) > 1:
        n = info["tp"]
        pairs.append((f"per rank, tp {n}", f"{info['rank_heads']} / {info['rank_kv_heads']} heads, weights "
                      f"{human_bytes(info['rank_weight_bytes'])}"))
        pairs.append(("per rank, KV cache", human_bytes(info["rank_kv_cache_bytes"])))
        pairs.append(("per rank, memory", human_bytes(info["rank_memory_bytes"])))
    return pairs


def info_table(info: dict[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    for label, value in info_pairs(info):
        table.add_row(label, value)
    return table


def show_info(result: dict[str, Any], title: str, fmt: str) -> None:
    """`attncli info` in the format asked for."""
    from attncli.formats import csv_text, markdown

    if fmt == "json":
        print_json(result)
    elif fmt == "md":
        write(markdown(["field", "value"], info_pairs(result), title=title))
    elif fmt == "csv":  # one row, the JSON keys as its header
        flat = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in result.items()}
        write(csv_text(list(flat), [list(flat.values())]))
    else:
        out.print(info_table(result, title=title))
