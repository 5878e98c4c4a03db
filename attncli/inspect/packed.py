"""Packed documents: several prompts in one sequence, as packed fine-tuning batches lay them
out, with a document id per slot, positions restarting in each document and a
block-diagonal causal mask; and the checks that prove no document sees another.

Two classic bugs can be reproduced on purpose: positions that run on across documents
(``positions="continuous"``) and no document mask (``mask="causal"``): the later documents
then attend the earlier ones. ``check_packed`` says which document leaked into which, and
by how much.

Letters: B batch (1 here), L layers, H heads, T slots.
"""

from __future__ import annotations

import torch

from attncli.errors import BadInputError
from attncli.inspect.reports import Batch, _forward, check_row, encode_rows

Tensor = torch.Tensor

POSITIONS = ("reset", "continuous")
MASKS = ("document", "causal")


def encode_packed(tokenizer, prompts: list[str], *, context: int, positions: str = "reset",
                  mask: str = "document") -> Batch:
    """The prompts end to end in one row; each document's first token label marked with ¶."""
    if positions not in POSITIONS:
        raise BadInputError(f"--packed-positions must be one of {', '.join(POSITIONS)}, got {positions!r}")
    if mask not in MASKS:
        raise BadInputError(f"--packed-mask must be one of {', '.join(MASKS)}, got {mask!r}")
    if len(prompts) < 2:
        raise BadInputError("--packed needs two or more prompts (one per document)")
    rows = encode_rows(tokenizer, prompts)
    total = sum(len(r) for r in rows)
    if total > context:
        raise BadInputError(f"the packed sequence has {total} tokens; the model's context is {context}")
    ids = [t for r in rows for t in r]
    docs = [d for d, r in enumerate(rows) for _ in r]
    pos = [i for r in rows for i in range(len(r))] if positions == "reset" else list(range(total))
    labels = []
    for r in rows:
        strings = tokenizer.token_strings(r)
        labels += ["¶" + strings[0], *strings[1:]]
    return Batch(torch.tensor([ids]), torch.ones(1, total, dtype=torch.bool), [labels], list(prompts),
                 documents=torch.tensor([docs]), positions=torch.tensor([pos]), document_mask=mask == "document")


def check_packed(lm, batch: Batch, *, backend: str, atol: float) -> list[dict[str, str]]:
    """Rows proving (or refuting) that no document sees another: by weights (every layer and
    head puts exactly 0 on other documents' keys), by behaviour (changing every token of the
    other documents leaves a document's logits bit-identical under eager, within ``atol``
    otherwise), and by positions (each document starts at 0, as it would alone)."""
    docs = batch.documents[0]  # (T,)
    n = int(docs.max()) + 1
    rows = []

    leaks = []
    on = docs.to(lm.device)

    def judge(layer: int, kept) -> None:  # each layer's weights judged on the device, then dropped
        w = kept.weights[0].float()  # (H, T, S)
        for qd in range(n):
            for kd in range(n):
                if qd == kd:
                    continue
                sel = (on[:, None] == qd) & (on[None, :] == kd)
                top = float(w[:, sel].max()) if sel.any() else 0.0
                if top > 0:
                    leaks.append((top, kd, qd, layer))

    _forward(lm, batch, backend="eager", probe=judge)
    worst = max(leaks) if leaks else None
    rows.append(check_row("documents (weights)", f"no query of any of the {n} documents weighs another document's keys",
                     not leaks, "every cross-document weight is exactly 0 in every layer and head" if not leaks else
                     f"document {worst[1]} leaked into document {worst[2]}: up to {worst[0]:.3g} of a query's weight "
                     f"(layer {worst[3]}); {len({(k, q) for _, k, q, _ in leaks})} document pair(s) leak"))

    base = _forward(lm, batch, backend=backend).logits[0].float()  # (T, V)
    moved: list[tuple[float, int, int]] = []  # (change, source document, document moved)
    g = torch.Generator().manual_seed(0)
    for d in range(n):  # change every token of document d; no other document may notice
        ids = batch.ids.clone()
        mine = docs == d
        ids[0, mine] = torch.randint(0, lm.config.vocab_size, (int(mine.sum()),), generator=g)
        out = _forward(lm, batch, backend=backend, ids=ids).logits[0].float()
        for e in range(n):
            if e != d:
                moved.append(((out[docs == e] - base[docs == e]).abs().max().item(), d, e))
    tol = 0.0 if backend == "eager" else atol
    bad = sorted((m for m in moved if m[0] > tol), reverse=True)
    exact = "bit-identical" if backend == "eager" else f"within {atol:g}"
    detail = (f"each document's logits stay {exact} when another document's tokens all change" if not bad else
              "; ".join(f"document {d} leaked into document {e}: changing it moved document {e}'s logits by up to "
                        f"{diff:.3g}" for diff, d, e in bad[:3]))
    rows.append(check_row(f"documents (behaviour, {backend})", "other documents' tokens cannot reach a document's logits",
                     not bad, detail))

    pos = batch.positions[0]
    starts = [int(pos[docs == d][0]) for d in range(n)]
    late = [(d, p) for d, p in enumerate(starts) if p != 0]
    detail = ("each document's positions start at 0" if not late else
              "; ".join(f"document {d} starts at position {p}, not 0 (positions run on from the documents before it)"
                        for d, p in late[:3]))
    rows.append(check_row("documents (positions)", "positions restart in each document, as it would run alone", not late,
                     detail))
    return rows
