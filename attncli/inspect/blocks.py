"""The block view of a mask: how a kernel that works in blocks (FlexAttention, 128 x 128 by
default) sees it. Each block of the score matrix is computed in full (every entry visible),
partly (the mask evaluated inside) or skipped (nothing visible); the skipped share is the
work such a kernel never does, and what a sliding window saves only when it is skipped."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

import torch

from attncli.model.attention.flex import block_states

Tensor = torch.Tensor

_CELLS = {"full": ("██", "bold green"), "partial": ("▒▒", "green"), "empty": (" ·", "dim")}


def summary_line(kind: str, counts: dict, t: int, s: int) -> str:
    size = counts["size"]
    return (f"{kind}: blocks of {size} x {size}: {counts['full']} full, {counts['partial']} partial, "
            f"{counts['empty']} skipped; {counts['skipped_fraction']:.1%} of the {t:,} x {s:,} matrix never computed")


def block_view(kind: str, mask: Tensor, counts: dict, *, width: int) -> Group:
    """One layer kind: the summary line (over the batch), and for the first sequence the
    grid of blocks when there is more than one and it fits ``width``."""
    t, s = mask.shape[-2:]
    lines = [Text(summary_line(kind, counts, t, s))]
    states = block_states(mask[:1], counts["size"])
    nq, nkv = states.full.shape[1:]
    if nq * nkv > 1 and 6 + 2 * nkv <= width:
        for r in range(nq):
            line = Text(f"{r * counts['size']:>5} ")
            for c in range(nkv):
                state = "full" if states.full[0, r, c] else "partial" if states.partial[0, r, c] else "empty"
                line.append(*_CELLS[state])
            lines.append(line)
        lines.append(Text("██ computed in full   ▒▒ partly (mask evaluated inside)   · skipped", style="dim"))
    return Group(*lines)
