"""How `inspect-mask` looks: token-labelled mask grids, score and weight grids, the
check table and the dtype-audit table. Returns rich renderables; cli.py prints them.

A grid is plain text lines: one fixed-width cell per key, column labels written top to
bottom so a token labels its column without widening it. When the keys do not fit the
console width, the grid is block-downsampled with tensor ops (never a Python loop over
cells), so 4,096 tokens render in a fraction of a second.
Letters: T queries, S keys, Tb x Sb blocks.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from rich import box
from rich.cells import cell_len, set_cell_size
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from attncli.inspect.blocks import block_view

Tensor = torch.Tensor

LABEL_CHARS = 8  # token characters in a row label
VLABEL_ROWS = 6  # height of the vertical column labels
SHADES = " ░▒▓█"
CELL = {"mask": 2, "scores": 6, "weights": 5}
RESULT_STYLE = {"pass": "bold green", "fail": "bold red", "skipped": "yellow"}
VERDICT_STYLE = {"ok": "green", "NaN": "red", "leak": "yellow", "error": "red"}


def token_label(tok: str | None) -> str:
    """A token as one short, single-width-per-character line."""
    if tok is None:
        return "<pad>"
    text = tok.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    text = text.strip() or text.replace(" ", "␣") or "∅"
    return "".join(ch if cell_len(ch) == 1 else "?" for ch in text)


def block_size(n: int, *, width: int, cell: int, margin: int) -> int:
    """1 when ``n`` cells fit beside ``margin`` columns of labels, else the smallest
    block edge that makes them fit (at least 8 cells across whatever the width)."""
    cols = max(8, (width - margin) // cell)
    if n <= cols:
        return 1
    need = -(-n // cols)
    # A round block (1, 2, 5 x 10^k or a power of two) keeps the slot labels readable.
    nice = sorted({m * 10**k for k in range(8) for m in (1, 2, 5)} | {2**k for k in range(27)})
    return next(x for x in nice if x >= need)


def _blocks(x: Tensor, block: int, fill) -> Tensor:
    # (T, S) -> (Tb, block, Sb, block), padding the ragged edge with `fill`.
    t, s = x.shape
    tb, sb = -(-t // block), -(-s // block)
    padded = torch.full((tb * block, sb * block), fill, dtype=x.dtype)
    padded[:t, :s] = x
    return padded.view(tb, block, sb, block)


def downsample(mask: Tensor, block: int) -> Tensor:
    """(T, S) bool -> (Tb, Sb) int8: 2 every cell visible, 1 some, 0 none. The ragged
    edge counts as neither, so a partial last block is judged on its real cells."""
    some = _blocks(mask, block, False).any(dim=3).any(dim=1)
    every = _blocks(mask, block, True).all(dim=3).all(dim=1)
    return some.to(torch.int8) + every.to(torch.int8)


def downsample_mean(values: Tensor, mask: Tensor, block: int) -> Tensor:
    """(T, S) -> (Tb, Sb) mean over the visible cells of each block; NaN where none."""
    v = _blocks(values.float().masked_fill(~mask, 0.0), block, 0.0).sum(dim=(1, 3))
    n = _blocks(mask, block, False).sum(dim=(1, 3))
    return torch.where(n > 0, v / n.clamp(min=1), torch.full_like(v, float("nan")))


def _vertical_labels(labels: list[str], cell: int, at: int, indent: int) -> list[Text]:
    height = min(VLABEL_ROWS, max((len(x) for x in labels), default=1))
    cut = [x[:height] for x in labels]
    lines = []
    for k in range(height):
        chars = []
        for lab in cut:
            i = k - (height - len(lab))  # bottom-aligned
            ch = lab[i] if 0 <= i < len(lab) else " "
            chars.append(" " * at + ch + " " * (cell - at - 1))
        lines.append(Text(" " * indent + "".join(chars), style="cyan"))
    return lines


def _row_labels(tokens: list[str | None]) -> list[str]:
    width = len(str(len(tokens) - 1))
    if all(t is None or t == str(i) for i, t in enumerate(tokens)):  # masks alone: slot numbers
        pad = 5 if None in tokens else 0
        return [f"{i:>{width}}" + (" " + ("<pad>" if t is None else "").ljust(pad)) * bool(pad) for i, t in enumerate(tokens)]
    return [f"{i:>{width}} {set_cell_size(token_label(t), LABEL_CHARS)}" for i, t in enumerate(tokens)]


def _range_labels(n: int, block: int) -> list[str]:
    spans = [(s, min(s + block, n) - 1) for s in range(0, n, block)]
    width = len(str(n - 1))
    return [f"{a:>{width}}-{b:<{width}}" for a, b in spans]


def _row_counts(mask: Tensor) -> Tensor:
    return mask.sum(-1)  # (T,) keys attended per query


def mask_grid(mask: Tensor, tokens: list[str | None], *, title: str, width: int) -> Group:
    """One (T, S) bool mask, rows and columns labelled with tokens, keys attended per row,
    fully masked rows flagged; block-downsampled when it does not fit ``width``."""
    t, s = mask.shape
    counts = _row_counts(mask)
    full_labels = _row_labels(tokens)
    margin = max(cell_len(x) for x in full_labels) + 1 + 24
    block = block_size(s, width=width, cell=CELL["mask"], margin=margin)
    lines: list[RenderableType] = [Text(title, style="bold")]
    if block == 1:
        indent = len(full_labels[0]) + 1
        lines += _vertical_labels([token_label(x) for x in tokens], CELL["mask"], 0, indent)
        rows = mask.tolist()
        for i, row in enumerate(rows):
            line = Text(full_labels[i] + " ", style="dim italic" if tokens[i] is None else "")
            for ok in row:
                line.append("■ " if ok else "· ", style="bold green" if ok else "dim")
            n = int(counts[i])
            line.append(f" {n:>{len(str(s))}} key" + ("s" if n != 1 else " "))
            if n == 0:
                line.append("  ⚠ fully masked", style="bold yellow")
            lines.append(line)
        lines.append(Text("■ may attend   · masked (-∞)   keys = keys attended by that query   "
                          "⚠ = fully masked row (its attention output is 0)", style="dim"))
        return Group(*lines)

    grid = downsample(mask, block)  # (Tb, Sb)
    labels = _range_labels(t, block)
    indent = len(labels[0]) + 1
    lines.append(Text(f"{t:,} x {s:,} cells in {block} x {block} blocks ({grid.shape[0]} x {grid.shape[1]})", style="dim"))
    lines += _vertical_labels([str(j * block) for j in range(grid.shape[1])], CELL["mask"], 0, indent)
    # Per block row: fewest and most keys any of its queries attends, and fully masked rows.
    per = _blocks(counts[:, None], block, -1)[:, :, 0, 0]  # (Tb, block), -1 past the end
    most = per.max(dim=1).values
    least = per.masked_fill(per < 0, s + 1).min(dim=1).values
    empty = (per == 0).sum(dim=1)
    cells = {2: ("██", "bold green"), 1: ("▒▒", "green"), 0: (" ·", "dim")}
    for r, row in enumerate(grid.tolist()):
        line = Text(labels[r] + " ")
        for state in row:
            line.append(*cells[state])
        lo, hi = int(least[r]), int(most[r])
        line.append(f" keys {lo}" + (f"-{hi}" if hi != lo else ""))
        if int(empty[r]):
            line.append(f"  ⚠ {int(empty[r])} fully masked", style="bold yellow")
        lines.append(line)
    lines.append(Text(f"block = {block} x {block} slots   ██ every cell may attend   ▒▒ some   · none   "
                      "keys = fewest-most keys attended by a query of that block row   ⚠ fully masked rows", style="dim"))
    return Group(*lines)


def _number_format(values: Tensor, what: str) -> tuple[int, int]:
    """(power of ten to scale by, decimals) so that the scores of one head read in 6
    characters: tiny ones (random models) scaled up, large ones with fewer decimals."""
    if what == "weights":
        return 0, 2
    finite = values[torch.isfinite(values)]
    top = float(finite.abs().max()) if finite.numel() else 0.0
    if top == 0.0:
        return 0, 2
    if top < 1.0:
        return -math.floor(math.log10(top)), 2
    return 0, 2 if top < 10 else 1 if top < 100 else 0


def value_grid(values: Tensor, mask: Tensor, tokens: list[str | None], *, what: str, title: str, width: int) -> Group:
    """Scores or weights of one head (T, S): numbers when they fit, masked cells as a dim
    -∞ (scores) or · (weights); a weight that is not 0 where masked is shown in red.
    Past the width: blocks shaded by the mean over their visible cells."""
    t, s = values.shape
    cell = CELL[what]
    labels = _row_labels(tokens)
    margin = max(cell_len(x) for x in labels) + 2
    block = block_size(s, width=width, cell=cell, margin=margin)
    lines: list[RenderableType] = [Text(title, style="bold")]
    if block == 1:
        indent = len(labels[0]) + 1
        scale, decimals = _number_format(values, what)
        if scale:
            lines[0].append(f"  (values x 1e{-scale})", style="dim")
        lines += _vertical_labels([token_label(x) for x in tokens], cell, cell - 2, indent)
        for i, (vals, oks) in enumerate(zip((values * 10.0**scale).tolist(), mask.tolist())):
            line = Text(labels[i] + " ", style="dim italic" if tokens[i] is None else "")
            for v, ok in zip(vals, oks):
                if what == "scores":
                    text = f"{v:{cell}.{decimals}f}" if v != float("-inf") else f"{'-∞':>{cell}}"
                    style = "" if ok else ("dim" if v == float("-inf") else "bold red")
                else:
                    text = f"{v:{cell}.2f}" if ok or v != 0 else f"{'·':>{cell}}"
                    style = "" if ok else ("dim" if v == 0 else "bold red")
                line.append(text[-cell:].rjust(cell), style=style)
            lines.append(line)
        masked = "-∞ = masked (pre-softmax score set to -inf)" if what == "scores" else "· = masked (weight exactly 0)"
        lines.append(Text(f"{masked}   red = a masked cell that is not {'-inf' if what == 'scores' else '0'}", style="dim"))
        return Group(*lines)

    finite = values.float().masked_fill(~torch.isfinite(values), 0.0)
    means = downsample_mean(finite, mask & torch.isfinite(values), block)  # (Tb, Sb)
    seen = ~torch.isnan(means)
    lo = float(means[seen].min()) if seen.any() else 0.0
    hi = float(means[seen].max()) if seen.any() else 0.0
    level = ((means - lo) / (hi - lo if hi > lo else 1.0) * (len(SHADES) - 2)).round().long() + 1  # 1..4
    row_labels = _range_labels(t, block)
    indent = len(row_labels[0]) + 1
    lines.append(Text(f"{t:,} x {s:,} cells in {block} x {block} blocks", style="dim"))
    lines += _vertical_labels([str(j * block) for j in range(means.shape[1])], 2, 0, indent)
    for r in range(means.shape[0]):
        line = Text(row_labels[r] + " ")
        for c in range(means.shape[1]):
            if seen[r, c]:
                line.append(SHADES[int(level[r, c])] * 2, style="cyan")
            else:
                line.append(" ·", style="dim")
        lines.append(line)
    lines.append(Text(f"block = {block} x {block} slots; shade = mean {what[:-1]} over the visible cells of a block, "
                      f"{lo:.3g} ({SHADES[1]}) to {hi:.3g} ({SHADES[-1]}); · = no visible cell", style="dim"))
    return Group(*lines)


def _header(report) -> str:
    if report.layers is None:
        parts = [f"{report.kind} mask", f"{report.mask.shape[-1]} slots"]
        if report.window is not None:
            parts.append(f"window {report.window}")
        if report.chunk is not None:
            parts.append(f"chunk {report.chunk}")
        pads = int((~report.valid).sum())
        if pads:
            parts.append(f"{pads} padding")
        return "masks alone: " + ", ".join(parts)
    groups = "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in report.layers.items())
    n = sum(len(v) for v in report.layers.values())
    window = f", window {report.model_window}" if report.model_window is not None else ""
    packed = ""
    if report.documents is not None:
        packed = f", {len(set(report.documents[0]))} packed documents (¶ marks each one's first token)"
    return f"{report.source}: {report.arch}, {n} layers ({groups}){window}, {report.dtype}{packed}"


def report_views(report, *, width: int) -> list[RenderableType]:
    """Everything one report shows, in order: header, then per sequence a mask grid per
    layer kind and the scores/weights grids asked for."""
    views: list[RenderableType] = [Text(_header(report), style="bold")]
    batch = report.mask.shape[0]
    for b in range(batch):
        if report.batched:
            pads = int((~report.valid[b]).sum())
            views.append(Text(f"\nsequence {b + 1} of {batch}: {report.prompts[b]!r}"
                              + (f" ({pads} padding slots)" if pads else ""), style="bold magenta"))
        for kind, mask in report.kind_masks.items():
            if report.layers is None:
                title = f"{kind} mask"
            else:
                mask_kind = {"sliding": "sliding", "chunked": "chunked"}.get(kind, "causal")
                within = " within each document" if report.documents is not None else ""
                title = f"layers {', '.join(map(str, report.layers[kind]))} ({kind} attention): {mask_kind} mask{within}"
            views.append(Text(""))
            views.append(mask_grid(mask[b], report.tokens[b], title=title, width=width))
        for what, values in (("scores", report.scores), ("weights", report.weights)):
            if values is None:
                continue
            note = "pre-softmax, scaled" if what == "scores" else "post-softmax"
            views.append(Text(""))
            views.append(value_grid(values[b], report.mask[b], report.tokens[b], what=what, width=width,
                                    title=f"layer {report.layer}, head {report.head}: {what} ({note})"))
    if report.blocks:
        views.append(Text(""))
        views.append(Text("what a block kernel (--attn flex) computes", style="bold"))
        for kind, counts in report.blocks.items():
            views.append(block_view(kind, report.kind_masks[kind], counts, width=width))
    return views


def check_table(rows: list[dict[str, str]]) -> Table:
    counts = {k: sum(r["result"] == k for r in rows) for k in ("pass", "fail", "skipped")}
    title = f"inspect-mask --check: {counts['pass']} passed, {counts['fail']} failed, {counts['skipped']} skipped"
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("what was checked")
    table.add_column("result", no_wrap=True)
    table.add_column("detail")
    for r in rows:
        table.add_row(r["name"], r["what"], Text(r["result"], style=RESULT_STYLE[r["result"]]), r["detail"])
    return table


def audit_table(rows: list[dict[str, Any]], scores: tuple[float, ...], visible: tuple[bool, ...]) -> Table:
    """One row per dtype, fill and method: the weight left on masked keys of a partly
    masked row, and what a fully masked row (a padding query) turns into."""
    shown = ", ".join(f"{s:g}" for s in scores)
    marks = "".join("v" if v else "x" for v in visible)
    notes: dict[str, str] = {}
    for r in rows:
        if r.get("note"):
            notes.setdefault(r["note"], r["method"] if r["attncli"] else f"{r['dtype']} {r['fill']} {r['method']}")
    caption = "\n".join(f"{where}: {note}" for note, where in notes.items())
    table = Table(title=f"dtype audit: softmax over scores [{shown}]; the partial row keeps keys {marks} (x = masked); "
                        "the masked row is a padding query's, every key masked",
                  title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD)
    for name in ("dtype", "fill", "method", "partial row", "masked row", "verdict"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        style = "bold" if r["attncli"] else ""
        table.add_row(r["dtype"], r["fill"], Text(r["method"], style=style), r["partial_row"], r["masked_row"],
                      Text(r["verdict"], style=VERDICT_STYLE[r["verdict"]]))
    return table


def show(report, checks, fmt: str, *, width: int) -> None:
    """inspect-mask's output in the format asked for: the grids and tables, --check's table as
    markdown, a CSV row per cell (with layer and head), or the JSON."""
    from attncli import console
    from attncli.errors import BadInputError
    from attncli.formats import markdown
    from attncli.inspect import audit, dumps

    if fmt == "md" and checks is None:
        raise BadInputError("--format md prints --check's table: add --check (or use --format csv / json)")
    if fmt == "json":
        console.print_json(dumps.report_json(report, checks))
    elif fmt == "csv":
        console.write(dumps.cells_csv(report))
    elif fmt == "md":
        console.write(markdown(["check", "what was checked", "result", "detail"],
                               [[r["name"], r["what"], r["result"], r["detail"]] for r in checks.rows],
                               title=f"inspect-mask --check: {report.source}"))
    else:
        for view in report_views(report, width=width):
            console.out.print(view)
        if checks is not None:
            console.out.print()
            console.out.print(check_table(checks.rows))
            console.out.print(audit_table(checks.audit, audit.AUDIT_SCORES, audit.AUDIT_VISIBLE))
