"""The dtype audit of `inspect-mask --check`: pure tensor math, no model. The usual fill
values for masked scores (-inf, finfo.min, -1e9, -1e4) go through softmax in float16
and bfloat16 with a fully masked row, by attncli's eager method and by textbook
variants, and each result is judged: exact zeros, NaN, leaked weight or an error."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from attncli.model.attention import backends, masks

Tensor = torch.Tensor


AUDIT_SCORES = (2.5, -1.0, 0.5, 3.0, -2.0, 1.5, 4.0, -30.0)  # one query's scores over 8 keys
AUDIT_VISIBLE = (False, False, True, True, True, True, False, False)  # 2 padding keys, 4 visible, 2 future
ATTNCLI_METHOD = "attncli eager"
ATTNCLI_HOW = "masked_fill(-inf), softmax in float32, masked weights set to 0"  # backends.eager_attention


def _fills(dtype: torch.dtype) -> list[tuple[str, float]]:
    return [("-inf", float("-inf")), ("finfo.min", torch.finfo(dtype).min), ("-1e9", -1e9), ("-1e4", -1e4)]


def _judge(w: Tensor, visible: Tensor) -> tuple[str, str, str]:
    """w (2, S): a partly masked row and a fully masked row -> (partial, full, verdict)."""
    w = w.float()
    part, full = w[0], w[1]
    if torch.isnan(part).any():
        p_text, p_bad = "NaN", "NaN"
    else:
        leak = float(part[~visible].abs().max())
        p_text, p_bad = ("0" if leak == 0 else f"leaks {leak:.3g}"), ("" if leak == 0 else "leak")
    if torch.isnan(full).any():
        f_text, f_bad = "NaN", "NaN"
    elif float(full.abs().sum()) == 0:
        f_text, f_bad = "zeros", ""
    else:
        f_text, f_bad = f"leaks (sum {float(full.sum()):.3g})", "leak"
    verdict = "NaN" if "NaN" in (p_bad, f_bad) else "leak" if (p_bad or f_bad) else "ok"
    return p_text, f_text, verdict


def dtype_audit(device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """The usual fill values through softmax in float16 and bfloat16, as additive masks
    and with masked_fill, on a partly masked row and a fully masked row (a padding
    query); then attncli's eager method and torch's sdpa with a bool mask. On ``device``,
    the model's: the kernels judged are the ones that run there (CUDA's SDPA is not the CPU's)."""
    rows: list[dict[str, Any]] = []
    visible = torch.tensor(AUDIT_VISIBLE, device=device)
    keep = torch.stack([visible, torch.zeros_like(visible)])  # (2, S): partial row, fully masked row
    for dtype in (torch.float16, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        x = torch.tensor(AUDIT_SCORES, device=device).to(dtype).expand(2, -1)  # (2, S)
        for fill_name, fill in _fills(dtype):
            for method in ("additive", "masked_fill"):
                row = {"dtype": name, "fill": fill_name, "method": method, "attncli": False}
                try:
                    if method == "additive":
                        # The mask tensor is made in float32 and cast, as most code does:
                        # a fill beyond the dtype's range becomes -inf on the way.
                        add = torch.where(keep, 0.0, fill).to(dtype)
                        w = torch.softmax(x + add, dim=-1)
                    else:
                        w = torch.softmax(x.masked_fill(~keep, fill), dim=-1)
                except RuntimeError as err:
                    rows.append({**row, "partial_row": "raises", "masked_row": "raises", "verdict": "error",
                                 "note": "torch: " + " ".join(str(err).split())})
                    continue
                p, f, v = _judge(w, visible)
                becomes_inf = method == "additive" and not math.isinf(fill) and math.isinf(float(torch.tensor(fill).to(dtype)))
                note = f"{fill_name} is -inf in {name}" if becomes_inf else ""
                rows.append({**row, "partial_row": p, "masked_row": f, "verdict": v, "note": note})
        # Scores in, weights out: with k = v = identity and scale 1, q @ k^T is the score
        # row itself and attention's output is its weight row.
        q = x[None, None].contiguous()  # (1, 1, 2, S)
        eye = torch.eye(len(AUDIT_SCORES), dtype=dtype, device=device)[None, None]  # (1, 1, S, S)
        lm = masks.LayerMask(keep[None, None], False)
        _, kept = backends.eager_attention(q, eye, eye, lm, scale=1.0, probe=True)
        p, f, v = _judge(kept.weights[0, 0], visible)
        rows.append({"dtype": name, "fill": "-inf", "method": ATTNCLI_METHOD, "attncli": True,
                     "partial_row": p, "masked_row": f, "verdict": v, "note": ATTNCLI_HOW})
        out = F.scaled_dot_product_attention(q, eye, eye, attn_mask=keep[None, None], scale=1.0)
        p, f, v = _judge(out[0, 0], visible)
        rows.append({"dtype": name, "fill": "bool mask", "method": "attncli sdpa", "attncli": True,
                     "partial_row": p, "masked_row": f, "verdict": v,
                     "note": f"F.scaled_dot_product_attention, torch {torch.__version__}, {torch.device(device).type}"})
    return rows
