"""`attncli inspect-mask --check`: proof that no query attends a key it must not see.
Never prints; returns result rows and dtype-audit rows for cli.py and inspect/render.py.

What is proven, on a model and a batch (check_model), each a row that passes, fails or
is skipped:
  mask         every applied (B, T, S) mask, eager's and the one the fast backend gets
               (an is_causal shortcut spelled out), equals the expected mask cell by cell;
  structural   the weight on every future, out-of-window and padding key is exactly 0
               in the run dtype, in every layer and head, with no NaN;
  behavioural  changing every token after position i (and every padding token) leaves
               the logits at real positions <= i unchanged: bit-identical for eager,
               within SDPA_ATOL for sdpa;
  sliding edge from the last query, the key W-1 back is visible and the keys W and W+1
               back get weight exactly 0 (full-attention layers see all three);
  dtype audit  the usual fill values through softmax in float16 and bfloat16, with a
               fully masked row: attncli's eager method must give exact zeros, no NaN.
On masks alone (check_alone) the same rows judge the built mask, and attncli's eager
attention on random q, k, v under it; behavioural needs a model and is skipped.

Letters: B batch, H query heads, L layers, T queries, S keys, V vocab.

The expected mask is written here from first principles on index tensors (key j is
visible from query i when j <= i for causal masks, i - j < W under a window W, and
slot j holds a real token), never through attncli.model.attention's predicates or builders:
those are what is on trial, and a broken predicate compared with itself would always
agree. The tests break a predicate on purpose and require these checks to fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from attncli.inspect.audit import ATTNCLI_HOW, ATTNCLI_METHOD, dtype_audit
from attncli.inspect.packed import check_packed
from attncli.inspect.reports import Batch, MaskReport, _applied, _forward, check_row, layer_groups
from attncli.model.attention import backends, masks

Tensor = torch.Tensor

# How far sdpa's logits may move when only masked tokens change. Its fused kernels skip
# or reorder masked blocks, so bit-equality is not promised; eager must be exact.
SDPA_ATOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2}


# ---- checks ----
def expected_mask(*, causal: bool, window: int | None, valid: Tensor, documents: Tensor | None = None,
                  chunk: int | None = None) -> Tensor:
    """(B, T, S) from first principles: key j is visible from query i when j <= i
    (causal), i - j < window (if any), slot j holds a real token, both slots belong to one
    document (packed, ``documents`` (B, T)) and to one chunk of ``chunk`` positions."""
    t = valid.shape[1]
    q, kv = torch.arange(t)[:, None], torch.arange(t)[None, :]  # (T, 1), (1, S)
    allowed = kv <= q if causal else torch.ones(t, t, dtype=torch.bool)
    if window is not None:
        allowed = allowed & (q - kv < window)
    out = allowed[None] & valid[:, None, :]
    if documents is not None:
        out = out & (documents[:, :, None] == documents[:, None, :])
    if chunk is not None:
        pos = (valid.long().cumsum(-1) - 1).clamp(min=0)  # (B, T) the position at each slot
        out = out & (pos[:, :, None] // chunk == pos[:, None, :] // chunk)
    return out


def _why(b: int, q: int, kv: int, *, causal: bool, window: int | None, valid: Tensor) -> str:
    if causal and kv > q:
        return f"future key, {kv - q} ahead"
    if window is not None and q - kv >= window:
        return f"outside the window, distance {q - kv} >= {window}"
    if not valid[b, kv]:
        return "padding key"
    return "the query's document or chunk decides otherwise"


def _first_cell(bad: Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in bad.nonzero()[0])


def mask_row(applied: dict[str, Tensor], expect: dict[str, Tensor], *, causal: bool, windows: dict[str, int | None],
             valid: Tensor, how: str) -> dict[str, str]:
    """Each applied (B, T, S) mask against its first-principles expectation, cell by cell."""
    what = ("applied mask == expected cell by cell: " + ("key <= query" if causal else "every key")
            + (", query - key < W" if any(windows.values()) else "") + ", key not padding" + how)
    for name, got in applied.items():
        want = expect[name]
        if torch.equal(got, want):
            continue
        extra, missing = got & ~want, ~got & want
        parts = []
        if extra.any():
            b, q, kv = _first_cell(extra)
            why = _why(b, q, kv, causal=causal, window=windows[name], valid=valid)
            parts.append(f"{int(extra.sum())} cells open that must be masked (first: sequence {b} query {q} -> key {kv}, {why})")
        if missing.any():
            b, q, kv = _first_cell(missing)
            parts.append(f"{int(missing.sum())} visible cells masked (first: sequence {b} query {q} -> key {kv})")
        return check_row("mask", what, False, f"{name}: " + "; ".join(parts))
    cells = sum(m.numel() for m in applied.values())
    return check_row("mask", what, True, f"{', '.join(applied)}: all {cells:,} cells as expected")


class Structural:
    """The structural check, one layer at a time (a model's ``probe`` keep function): each
    layer's (B, H, T, S) weights are judged where they are, on the device, and dropped; only
    the last query's scores and weights stay, on the host, for the sliding-edge rows. So
    ``--check`` holds one layer's scores at a time, not L of them. ``expect[l]`` is (B, T, S)."""

    what = "weight on every future, out-of-window and padding key is exactly 0 in the run dtype; no NaN"

    def __init__(self, expect: list[Tensor], *, causal: bool, windows: list[int | None], valid: Tensor,
                 label: Callable[[int], str]):
        self.expect, self.causal, self.windows, self.valid, self.label = expect, causal, windows, valid, label
        self.failure: dict[str, str] | None = None
        self.layers, self.heads, self.dtype = 0, 0, ""
        self.last_scores: dict[int, Tensor] = {}  # layer -> (B, H, 1, S) float32, host
        self.last_weights: dict[int, Tensor] = {}  # layer -> (B, H, 1, S) run dtype, host

    def __call__(self, layer: int, kept) -> None:
        w = kept.weights  # (B, H, T, S) run dtype, on the model's device
        self.layers, self.heads, self.dtype = self.layers + 1, w.shape[1], str(w.dtype).removeprefix("torch.")
        if self.failure is None:
            self.failure = self._judge(layer, w)
        if kept.scores is not None:
            self.last_scores[layer] = kept.scores[:, :, -1:].cpu()
        self.last_weights[layer] = w[:, :, -1:].cpu()
        return None

    def _judge(self, l: int, w: Tensor) -> dict[str, str] | None:
        nan = torch.isnan(w)
        if nan.any():
            b, h, q, kv = _first_cell(nan)
            return check_row("structural", self.what, False,
                             f"{self.label(l)} head {h}: NaN weight at sequence {b} query {q} -> key {kv}")
        leak = (w != 0) & ~self.expect[l].to(w.device)[:, None]  # (B, H, T, S)
        if leak.any():
            b, h, q, kv = _first_cell(leak)
            why = _why(b, q, kv, causal=self.causal, window=self.windows[l], valid=self.valid)
            worst = float(w.float().masked_fill(~leak, 0).abs().max())
            return check_row("structural", self.what, False,
                             f"{self.label(l)} head {h}: {int(leak[:, h].sum())} masked cells with weight != 0 "
                             f"(max {worst:.3g}); first: sequence {b} query {q} -> key {kv} ({why})")
        return None

    def row(self) -> dict[str, str]:
        if self.failure is not None:
            return self.failure
        masked = int(sum((~a).sum() for a in self.expect[: self.layers])) * self.heads
        return check_row("structural", self.what, True, f"{self.layers} layer(s) x {self.heads} heads, {self.dtype}: "
                         f"all {masked:,} masked cells have weight exactly 0")


def structural_row(weights: list[Tensor], expect: list[Tensor], *, causal: bool, windows: list[int | None],
                   valid: Tensor, label: Callable[[int], str]) -> dict[str, str]:
    """The structural check over weights already in hand: ``weights[l]`` (B, H, T, S)."""
    judge = Structural(expect, causal=causal, windows=windows, valid=valid, label=label)
    for l, w in enumerate(weights):
        judge(l, backends.AttnProbe(None, w))
    return judge.row()


def probe_positions(t: int, window: int | None) -> list[int]:
    """A few cut points i (first, last, middle, the window's edge), not all of them."""
    cands = {0, t // 2, t - 2}
    if window is not None:
        cands |= {window - 1, window}
    return sorted(i for i in cands if 0 <= i <= t - 2)


def behavioural_row(lm, batch: Batch, backend: str) -> dict[str, str]:
    """Change every token after position i (and every padding token) and show that the
    logits at real positions <= i do not move: exactly for eager, within SDPA_ATOL for sdpa."""
    exact = backend == "eager"
    dtype = lm.dtype
    atol = 0.0 if exact else SDPA_ATOL.get(dtype, 1e-2)
    rule = "exactly equal (torch.equal)" if exact else f"within atol {atol:g}"
    what = (f"{backend}: replace tokens after position i and padding tokens; logits at positions <= i "
            f"stay {rule}")
    b, t = batch.ids.shape
    cuts = probe_positions(t, lm.config.sliding_window if lm.config.has_sliding_layers else None)
    if not cuts and not batch.padded:
        return check_row(f"behavioural ({backend})", what, None, "skipped: one token, nothing after it to change")
    cuts = cuts or [t - 1]
    base = _forward(lm, batch, backend=backend).logits.float().cpu()  # (B, T, V)
    vocab = lm.config.vocab_size
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for i in cuts:
        change = (torch.arange(t) > i)[None, :] | ~batch.valid  # (B, T)
        other = torch.randint(0, vocab, (b, t), generator=g)
        other = torch.where(other == batch.ids, (other + 1) % vocab, other)  # always a different id
        ids = torch.where(change, other, batch.ids)
        logits = _forward(lm, batch, backend=backend, ids=ids).logits.float().cpu()
        keep = ~change  # (B, T): real positions <= i
        diff = float((logits[keep] - base[keep]).abs().max()) if keep.any() else 0.0
        same = torch.equal(logits[keep], base[keep]) if exact else diff <= atol
        worst = max(worst, diff)
        if not same:
            return check_row(f"behavioural ({backend})", what, False,
                        f"changing tokens after position {i} moved the logits at positions <= {i} "
                        f"(max |delta| {diff:.3g}): a later or padding token leaks into earlier positions")
    pads = int((~batch.valid).sum())
    return check_row(f"behavioural ({backend})", what, True,
                f"cut after positions {', '.join(map(str, cuts))}" + (f"; {pads} padding tokens changed" if pads else "")
                + ("; logits bit-identical" if exact else f"; max |delta| {worst:.3g}"))


def edge_rows(scores: dict[int, Tensor] | None, weights: dict[int, Tensor] | None, mask: Tensor | None, *,
              layers: list[int],
              window: int, valid: Tensor, windowed: bool) -> dict[str, str]:
    """The off-by-one users hit: from the last query, the key W-1 back must be visible and
    the keys W and W+1 back must get weight exactly 0 (``windowed``); in a layer without a
    window all three are visible. Judged on scores/weights (a model) or on ``mask``."""
    w = window
    name = "sliding edge" if windowed else "no window in full layers"
    what = (f"from the last query: key at distance {w - 1} (W-1) visible, distances {w} (W) and {w + 1} (W+1) "
            "get weight exactly 0" if windowed else
            f"full-attention layers see keys at distances {w - 1}, {w} and {w + 1} (the window is not applied)")
    t = valid.shape[1]
    q = t - 1
    real = valid.sum(-1)  # (B,) real tokens per row; the last slot is always real
    rows = [b for b in range(valid.shape[0]) if int(real[b]) >= w + 2]
    if not rows:
        return check_row(name, what, None, f"skipped: prompt shorter than W+2 = {w + 2} tokens (the longest has {int(real.max())})")
    where = f"layer(s) {', '.join(map(str, layers))}" if layers else "mask"
    low = math.inf
    for b in rows:
        for d in (w - 1, w, w + 1):
            should = d == w - 1 or not windowed
            kv = q - d
            if scores is None:
                seen = bool(mask[b, q, kv])
                if seen != should:
                    return check_row(name, what, False, f"sequence {b} query {q}: key at distance {d} is "
                                f"{'visible' if seen else 'masked'}, must be {'visible' if should else 'masked'}")
                continue
            for l in layers:
                s = scores[l][b, :, -1, kv]  # (H,) the last query's row (q)
                p = weights[l][b, :, -1, kv]  # (H,) run dtype
                if should:
                    # A visible key has a finite score; its weight can underflow to 0 in
                    # float16, so weight > 0 is demanded only of float32 runs.
                    bad = ~torch.isfinite(s)
                    if p.dtype == torch.float32:
                        bad = bad | (p <= 0)
                    low = min(low, float(p.float().min()))
                else:
                    bad = (p != 0) | (s != float("-inf"))
                if bad.any():
                    h = int(bad.nonzero()[0])
                    state = f"score {float(s[h]):.4g}, weight {float(p[h]):.4g}"
                    return check_row(name, what, False, f"layer {l} head {h}, sequence {b} query {q}: key at distance {d} "
                                f"has {state}; it must be {'visible' if should else 'masked'}")
    heads = "" if scores is None else f" x {scores[layers[0]].shape[1]} heads"
    tail = f"; smallest weight at distance {w - 1}: {low:.3g}" if scores is not None and math.isfinite(low) else ""
    return check_row(name, what, True, f"{where}{heads}, query {q}, {len(rows)} sequence(s): as required{tail}")


def audit_row(audit: list[dict[str, Any]]) -> dict[str, str]:
    """Pass when attncli's eager method gives exact zeros and no NaN in both dtypes; the
    tutorial variants are reported, not judged (they are not attncli's)."""
    ours = [r for r in audit if r["method"] == ATTNCLI_METHOD]
    ok = all(r["verdict"] == "ok" for r in ours)
    others = [r for r in audit if not r["attncli"]]
    count = {v: sum(r["verdict"] == v for r in others) for v in ("ok", "NaN", "leak", "error")}
    what = "fills -inf, finfo.min, -1e9, -1e4 through softmax in float16 and bfloat16, with a fully masked row"
    detail = (f"attncli's method ({ATTNCLI_HOW}): "
              f"{'exact zeros, no NaN' if ok else 'FAILS'} in both dtypes; of {len(others)} textbook variants "
              f"{count['NaN']} give NaN, {count['leak']} leak weight, {count['error']} raise an error, {count['ok']} are clean")
    return check_row("dtype audit", what, ok, detail)


@dataclass
class CheckResult:
    rows: list[dict[str, str]]
    audit: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return all(r["result"] != "fail" for r in self.rows)

    @property
    def failed(self) -> list[str]:
        return [r["name"] for r in self.rows if r["result"] == "fail"]


def check_model(lm, batch: Batch, *, backend: str) -> CheckResult:
    """Every check on a model and batch: masks as applied (eager's explicit ones and
    those ``backend`` receives), weights per layer and head, behaviour under changed
    later/padding tokens, the sliding-window edge, and the dtype audit."""
    cfg = lm.config
    b, t = batch.ids.shape
    valid = batch.valid.cpu()
    groups = layer_groups(cfg)
    windows = {k: cfg.window_of(v[0]) for k, v in groups.items()}
    docs = batch.documents if batch.documents is not None else None  # the mask a packing must apply
    expect = {k: expected_mask(causal=True, window=w, valid=valid, documents=docs, chunk=cfg.chunk_of(groups[k][0]))
              for k, w in windows.items()}

    layer_expect = [expect[kind] for kind in cfg.layer_types]
    structural = Structural(layer_expect, causal=True, windows=[cfg.window_of(i) for i in range(cfg.num_layers)],
                            valid=valid, label=lambda l: f"layer {l} ({cfg.layer_types[l]})")
    probed = _forward(lm, batch, backend="eager", probe=structural)  # judged layer by layer, nothing kept
    applied = {f"{k} (eager)": _applied(probed.masks[k], b, t) for k in groups}
    wants = {f"{k} (eager)": expect[k] for k in groups}
    wins = {f"{k} (eager)": windows[k] for k in groups}
    how = ""
    if backend != "eager":
        fast = _forward(lm, batch, backend=backend)
        applied |= {f"{k} ({backend})": _applied(fast.masks[k], b, t) for k in groups}
        wants |= {f"{k} ({backend})": expect[k] for k in groups}
        wins |= {f"{k} ({backend})": windows[k] for k in groups}
        implicit = [k for k in groups if fast.masks[k].mask is None and fast.masks[k].is_causal]
        if implicit:
            how = f"; {backend} got is_causal=True and no mask for {', '.join(implicit)} layers, judged as plain causal"
    rows = [mask_row(applied, wants, causal=True, windows=wins, valid=valid, how=how)]

    rows.append(structural.row())
    for be in dict.fromkeys([backend, "eager"]):
        rows.append(behavioural_row(lm, batch, be))
    if cfg.sliding_window is not None and "sliding" in groups:
        sc, wt = structural.last_scores, structural.last_weights  # the last query's, by layer
        rows.append(edge_rows(sc, wt, None, layers=groups["sliding"], window=cfg.sliding_window, valid=valid, windowed=True))
        if "full" in groups:
            rows.append(edge_rows(sc, wt, None, layers=groups["full"], window=cfg.sliding_window, valid=valid, windowed=False))
    else:
        rows.append(check_row("sliding edge", "distances W-1, W, W+1 around the window", None, "skipped: the model has no sliding window"))
    if batch.documents is not None:
        rows += check_packed(lm, batch, backend=backend, atol=SDPA_ATOL[lm.dtype])
    audit = dtype_audit(lm.device)
    rows.append(audit_row(audit))
    return CheckResult(rows, audit)


def check_alone(report: MaskReport, *, seed: int = 0) -> CheckResult:
    """The checks that need no model: the built mask against first principles, attncli's
    eager attention on random q/k/v under it, the window edge and the dtype audit."""
    valid, kind, window = report.valid, report.kind, report.window
    causal = kind != "full"
    expect = expected_mask(causal=causal, window=window, valid=valid, chunk=report.chunk)
    rows = [mask_row({kind: report.mask}, {kind: expect}, causal=causal, windows={kind: window}, valid=valid, how="")]
    t = valid.shape[1]
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, 2, t, 8, generator=g) for _ in range(3))  # (B, H, T, D)
    _, kept = backends.eager_attention(q, k, v, masks.LayerMask(report.mask[:, None], False), scale=8**-0.5, probe=True)
    rows.append(structural_row([kept.weights], [expect], causal=causal, windows=[window], valid=valid,
                               label=lambda l: "eager attention (random q, k, v)"))
    rows.append(check_row("behavioural", "logits at positions <= i unchanged when later tokens change", None,
                     "skipped: needs a model (-m)"))
    if window is not None:
        rows.append(edge_rows(None, None, report.mask, layers=[], window=window, valid=valid, windowed=True))
    else:
        rows.append(check_row("sliding edge", "distances W-1, W, W+1 around the window", None, f"skipped: a {kind} mask has no window"))
    audit = dtype_audit()
    rows.append(audit_row(audit))
    return CheckResult(rows, audit)
