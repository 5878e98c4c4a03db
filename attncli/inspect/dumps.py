"""`attncli inspect-mask --json` and `--dump`: a MaskReport (and its check results) as
JSON, CSV or safetensors. Dumps are written atomically: a temporary file beside the
target, renamed over it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from attncli.atomic import check_output_path, write_atomic
from attncli.errors import BadInputError
from attncli.inspect.reports import MaskReport

if TYPE_CHECKING:
    from attncli.inspect.leakcheck import CheckResult

Tensor = torch.Tensor

DUMP_SUFFIXES = (".json", ".csv", ".safetensors")


# ---- JSON, CSV and safetensors ----
def _finite_or_none(values: Tensor) -> list[list[float | None]]:
    # JSON has no Infinity: a masked score (-inf) is written as null.
    return [[v if math.isfinite(v) else None for v in row] for row in values.tolist()]


def report_json(report: MaskReport, checks: CheckResult | None = None) -> dict[str, Any] | list[dict[str, Any]]:
    """docs/CLI.md's shape: one object for one sequence, a list for a batch."""
    seqs = []
    for b in range(report.mask.shape[0]):
        d: dict[str, Any] = {"tokens": report.tokens[b], "kind": report.kind, "mask": report.mask[b].tolist()}
        if report.documents is not None:
            d["prompts"] = report.prompts  # one per document of the packed sequence
        elif report.prompts is not None:
            d["prompt"] = report.prompts[b]
        if report.window is not None:
            d["window"] = report.window
        if report.chunk is not None:
            d["chunk"] = report.chunk
        if report.documents is not None:
            d["documents"] = report.documents[b]
        if report.blocks is not None:
            d["blocks"] = report.blocks  # per layer kind, over the whole batch
        if report.layers is not None:
            d["layers"] = report.layers
            d["layer"] = report.layer
        if report.scores is not None or report.weights is not None:
            d["head"] = report.head
        if report.scores is not None:
            d["scores"] = _finite_or_none(report.scores[b])
        if report.weights is not None:
            d["weights"] = report.weights[b].tolist()
        if checks is not None:
            d["checks"] = checks.rows  # of the whole batch
            d["dtype_audit"] = checks.audit
        seqs.append(d)
    return seqs if report.batched else seqs[0]


def check_dump_path(path: str | os.PathLike) -> Path:
    """Refuse a bad --dump before any model runs."""
    return check_output_path(path, flag="--dump", suffixes=DUMP_SUFFIXES)


def _csv(report: MaskReport, tmp: str) -> None:
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        fh.write(cells_csv(report, with_layer=False))


def cells_csv(report: MaskReport, *, with_layer: bool = True) -> str:
    """A row per (sequence, query, key) cell: tokens, may_attend, and the score and weight
    when shown; ``with_layer`` (--format csv) adds the layer and head the cells belong to."""
    header = ["sequence", "query", "key", "query_token", "key_token", "may_attend"]
    header += ["score"] * (report.scores is not None) + ["weight"] * (report.weights is not None)
    if with_layer:
        header = ["layer", "head"] + header
    lead = [report.layer if report.layer is not None else "", report.head if report.head is not None else ""]
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(header)
    for b in range(report.mask.shape[0]):
        toks = ["" if x is None else x for x in report.tokens[b]]
        mask = report.mask[b].tolist()
        sc = report.scores[b].tolist() if report.scores is not None else None
        wt = report.weights[b].tolist() if report.weights is not None else None
        for q, row in enumerate(mask):
            for k, ok in enumerate(row):
                cells = [b, q, k, toks[q], toks[k], int(ok)]
                if sc is not None:
                    s = sc[q][k]
                    cells.append("-inf" if s == float("-inf") else repr(s))
                if wt is not None:
                    cells.append(repr(wt[q][k]))
                out.writerow(lead + cells if with_layer else cells)
    return buf.getvalue()


def _safetensors(report: MaskReport, tmp: str) -> None:
    from safetensors.torch import save_file

    # safetensors refuses tensors sharing memory: `mask` is also one of the kind masks.
    tensors = {"mask": report.mask.clone(), "valid": report.valid.clone()}
    for kind, m in report.kind_masks.items():
        tensors[f"mask.{kind}"] = m.clone()
    if report.scores is not None:
        tensors["scores"] = report.scores.float().contiguous()
    if report.weights is not None:
        tensors["weights"] = report.weights.float().contiguous()
    meta = {"kind": report.kind, "tokens": json.dumps(report.tokens), "source": report.source}
    for key in ("window", "layer", "head"):
        if getattr(report, key) is not None:
            meta[key] = str(getattr(report, key))
    if report.layers is not None:
        meta["layers"] = json.dumps(report.layers)
    save_file(tensors, tmp, metadata=meta)


def write_dump(path: Path, report: MaskReport, checks: CheckResult | None = None) -> None:
    """By extension: .json (as --json), .csv (one row per query/key cell; masked scores
    as -inf), .safetensors (bool masks, float32 scores/weights, tokens in the metadata)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            text = json.dumps(report_json(report, checks))
            write_atomic(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
        elif suffix == ".csv":
            write_atomic(path, lambda tmp: _csv(report, tmp))
        else:
            write_atomic(path, lambda tmp: _safetensors(report, tmp))
    except OSError as err:
        raise BadInputError(f"cannot write --dump {path}: {err.strerror or err}") from None
