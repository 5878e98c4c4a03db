"""What `attncli inspect-mask` shows: mask reports, the masks a model really applies
to a batch, and one layer/head's scores and weights. Never prints; returns tensors and
dataclasses for cli.py and inspect/render.py. The leak checks and the dtype audit live in
leakcheck.py, the JSON/CSV/safetensors dumps in dumps.py; both build on this module,
never the reverse.

Letters: B batch, H query heads, L layers, T queries, S keys, V vocab. Every report
is one prefill from slot 0, so T == S and query i sits at key slot i.

Masks come from attncli.model.attention (the code the model runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from attncli.checkpoint.files import display_name
from attncli.errors import BadInputError
from attncli.model.attention import masks
from attncli.model.attention.flex import block_states

Tensor = torch.Tensor

# A model's layer kinds (config layer_types) and the mask kind each one applies.
LAYER_MASK_KIND = {"full": "causal", "sliding": "sliding", "chunked": "chunked"}


# ---- reports ----
@dataclass
class MaskReport:
    """The masks shown for one batch. ``mask`` is the first layer's (or the chosen
    layer's); ``kind_masks`` holds every layer kind shown (one entry for masks alone)."""

    kind: str  # mask kind of `mask`: causal | sliding | padding | full
    mask: Tensor  # (B, T, S) bool, True = query may attend to key
    tokens: list[list[str | None]]  # (B, T) labels, None at left padding
    valid: Tensor  # (B, S) bool, True = a real token
    window: int | None = None  # of `mask`
    model_window: int | None = None  # the model's sliding window, whichever layer is shown
    kind_masks: dict[str, Tensor] = field(default_factory=dict)  # layer kind -> (B, T, S)
    layers: dict[str, list[int]] | None = None  # layer kind -> layer indices (model only)
    layer: int | None = None
    head: int | None = None
    scores: Tensor | None = None  # (B, T, S) float32, -inf where masked
    weights: Tensor | None = None  # (B, T, S) float32 copy of the run dtype's weights
    source: str = "masks alone"
    arch: str | None = None
    dtype: str | None = None
    prompts: list[str] | None = None
    chunk: int | None = None  # of `mask`, when chunked
    documents: list[list[int | None]] | None = None  # (B, S) document id per slot (packed), None at padding
    blocks: dict[str, dict] | None = None  # layer kind -> block counts at the kernel's block size

    @property
    def batched(self) -> bool:
        return self.mask.shape[0] > 1  # packed prompts are one sequence


def check_row(name: str, what: str, ok: bool | None, detail: str) -> dict[str, str]:
    """One row of --check's table: ``ok`` None is a skipped check."""
    result = "skipped" if ok is None else "pass" if ok else "fail"
    return {"name": name, "what": what, "result": result, "detail": detail}


def check_window(window: int | None) -> None:
    if window is not None and window < 1:
        raise BadInputError(f"--window must be at least 1, got {window}")


def masks_alone(seq_len: int, *, kind: str | None = None, window: int | None = None, pad: int = 0,
                chunk: int | None = None, block_size: int = 128) -> MaskReport:
    """Masks with no model, built by masks.mask_fn/build_mask. ``pad`` left-pads
    the first slots, as a shorter prompt in a batch would be."""
    if seq_len < 1:
        raise BadInputError(f"--seq-len must be at least 1, got {seq_len}")
    check_window(window)
    if not 0 <= pad < seq_len:
        raise BadInputError(f"--pad must be between 0 and seq-len - 1 ({seq_len - 1}), got {pad}")
    kind = kind or ("sliding" if window is not None else "padding" if pad else "causal")
    if kind not in masks.MASK_KINDS:
        raise BadInputError(f"unknown --kind {kind!r}; known: {', '.join(masks.MASK_KINDS)}")
    if kind == "sliding" and window is None:
        raise BadInputError("--kind sliding needs --window W")
    if kind != "sliding" and window is not None:
        raise BadInputError(f"--window applies to --kind sliding, not --kind {kind}")
    if kind == "padding" and not pad:
        raise BadInputError("--kind padding needs padding slots: add --pad P (or give prompts of different lengths to a model)")
    if kind == "chunked" and chunk is None:
        raise BadInputError("--kind chunked needs --chunk C")
    if kind != "chunked" and chunk is not None:
        raise BadInputError(f"--chunk applies to --kind chunked, not --kind {kind}")
    if chunk is not None and chunk < 1:
        raise BadInputError(f"--chunk must be at least 1, got {chunk}")
    valid = (torch.arange(seq_len) >= pad)[None]  # (1, S)
    slot_pos = (torch.arange(seq_len) - pad).clamp(min=0)[None]  # positions restart after the padding
    fn = masks.mask_fn(kind, window=window, kv_valid=valid if pad else None, chunk=chunk,
                       slot_pos=slot_pos if pad else None)
    mask = masks.build_mask(fn, batch=1, q_len=seq_len, kv_len=seq_len)[:, 0]  # (1, T, S)
    tokens = [[None if i < pad else str(i) for i in range(seq_len)]]
    report = MaskReport(kind, mask, tokens, valid, window, kind_masks={kind: mask}, chunk=chunk)
    report.blocks = kind_blocks(report.kind_masks, block_size)
    return report


def kind_blocks(kind_masks: dict[str, Tensor], size: int) -> dict[str, dict]:
    """Per layer kind, how a kernel with ``size`` blocks (FlexAttention's 128) sees the mask:
    blocks computed in full, partly (the mask evaluated inside), skipped; summed over the batch."""
    if size < 1:
        raise BadInputError(f"--block-size must be at least 1, got {size}")
    return {kind: block_states(mask, size).summary() for kind, mask in kind_masks.items()}


# ---- a model's input ----
@dataclass
class Batch:
    ids: Tensor  # (B, T) long, left-padded
    valid: Tensor  # (B, T) bool, False at padding
    tokens: list[list[str | None]]
    prompts: list[str] | None
    documents: Tensor | None = None  # (B, T) document id per token: prompts packed into one sequence
    positions: Tensor | None = None  # (B, T) given positions (packed: restarting per document, or not)
    document_mask: bool = True  # packed: apply the document mask (False reproduces the missing-mask bug)

    @property
    def padded(self) -> bool:
        return not bool(self.valid.all())


def _pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_ids[0] if tokenizer.eos_token_ids else 0


def encode_rows(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Each prompt's token ids; a prompt that encodes to nothing is refused."""
    rows = tokenizer.encode_batch(list(prompts))
    for text, ids in zip(prompts, rows):
        if not ids:
            raise BadInputError(f"prompt {text!r} encodes to no tokens")
    return rows


def encode_prompts(tokenizer, prompts: list[str], *, context: int) -> Batch:
    """One left-padded batch, as generate builds it."""
    rows = encode_rows(tokenizer, prompts)
    t = max(len(r) for r in rows)
    if t > context:
        raise BadInputError(f"the longest prompt has {t} tokens; the model's context is {context}")
    pad = _pad_id(tokenizer)
    ids = torch.tensor([[pad] * (t - len(r)) + r for r in rows], dtype=torch.long)  # (B, T)
    valid = torch.tensor([[False] * (t - len(r)) + [True] * len(r) for r in rows])  # (B, T)
    tokens = [[None] * (t - len(r)) + tokenizer.token_strings(r) for r in rows]
    return Batch(ids, valid, tokens, list(prompts))


def arbitrary_tokens(seq_len: int, *, vocab: int, context: int, tokenizer=None, seed: int = 0) -> Batch:
    """``seq_len`` pseudo-random token ids (fixed seed): a model's masks at a length
    without writing a prompt. Labelled by the tokenizer when there is one, else #id."""
    if seq_len > context:
        raise BadInputError(f"--seq-len {seq_len} is longer than the model's context ({context})")
    if tokenizer is not None:
        vocab = min(vocab, tokenizer.vocab_size)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (1, seq_len), generator=g)
    row = ids[0].tolist()
    labels = tokenizer.token_strings(row) if tokenizer is not None else [f"#{i}" for i in row]
    return Batch(ids, torch.ones(1, seq_len, dtype=torch.bool), [labels], None)


# ---- a model on a batch ----
def layer_groups(cfg) -> dict[str, list[int]]:
    """Layer kind -> the layers using it, in order of first use: {"full": [0], "sliding": [1, 2]}."""
    groups: dict[str, list[int]] = {}
    for i, kind in enumerate(cfg.layer_types):
        groups.setdefault(kind, []).append(i)
    return groups


def pick_layer(cfg, *, kind: str | None, layer: int | None) -> int:
    """The layer whose mask (and scores/weights) is shown. With a model, ``kind`` picks
    a layer kind: causal (or full) for full-attention layers, sliding for windowed ones."""
    n, groups = cfg.num_layers, layer_groups(cfg)
    if layer is not None and not 0 <= layer < n:
        raise BadInputError(f"--layer {layer} is out of range: the model has {n} layers (0..{n - 1})")
    if kind is None:
        return 0 if layer is None else layer
    wanted = {"causal": "full", "full": "full", "sliding": "sliding", "chunked": "chunked"}.get(kind)
    if wanted is None:
        if kind == "padding":
            raise BadInputError("with a model, --kind picks layers (causal or sliding); padding is part of every "
                                "layer's mask when the prompts differ in length")
        raise BadInputError(f"unknown --kind {kind!r}; with a model use causal or sliding")
    if wanted not in groups:
        raise BadInputError(f"--kind {kind}: this model has no {wanted}-attention layers ({describe_layers(groups)})")
    if layer is None:
        return groups[wanted][0]
    if cfg.layer_types[layer] != wanted:
        raise BadInputError(f"--layer {layer} is a {cfg.layer_types[layer]}-attention layer, not {wanted} "
                            f"({describe_layers(groups)})")
    return layer


def check_head(cfg, head: int | None) -> int:
    h = cfg.num_heads
    if head is not None and not 0 <= head < h:
        raise BadInputError(f"--head {head} is out of range: the model has {h} heads (0..{h - 1})")
    return head or 0


def describe_layers(groups: dict[str, list[int]]) -> str:
    return "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in groups.items())


def _forward(lm, batch: Batch, *, backend: str, probe=False, ids: Tensor | None = None):
    ids = (batch.ids if ids is None else ids).to(lm.device)
    mask = batch.valid.to(lm.device) if batch.padded else None
    extra = {}
    if batch.positions is not None:
        extra["positions"] = batch.positions.to(lm.device)
    if batch.documents is not None and batch.document_mask:
        extra["documents"] = batch.documents.to(lm.device)
    with torch.inference_mode():
        return lm.model(ids, attention_mask=mask, backend=backend, probe=probe, **extra)


def _applied(lm_mask: masks.LayerMask, b: int, t: int) -> Tensor:
    """(B, T, S) bool of what the layer applied. An implicit mask (None, is_causal) is
    spelled out from first principles, not through masks.causal, so the checks
    judge the is_causal shortcut rather than trust it."""
    if lm_mask.mask is not None:
        return lm_mask.mask[:, 0].expand(b, t, t).cpu()
    spec = lm_mask.spec
    if not lm_mask.is_causal and any(x is not None for x in (spec.window, spec.chunk, spec.documents, spec.kv_valid)):
        # FlexAttention got no tensor: the predicate it evaluates, spelled out
        return masks.build_mask(masks.spec_fn(spec), batch=b, q_len=t, kv_len=t)[:, 0].cpu()
    q, kv = torch.arange(t)[:, None], torch.arange(t)[None, :]
    seen = kv <= q if lm_mask.is_causal else torch.ones(t, t, dtype=torch.bool)  # neither: every key
    return seen.expand(b, t, t)


def model_report(lm, batch: Batch, *, kind: str | None = None, layer: int | None = None, head: int | None = None,
                 scores: bool = False, weights: bool = False, backend: str = "sdpa",
                 block_size: int = 128) -> MaskReport:
    """The masks ``lm`` applies to ``batch``, from its own forward pass; scores and
    weights of one layer and head when asked (that pass then runs eager)."""
    cfg = lm.config
    shown = pick_layer(cfg, kind=kind, layer=layer)
    head = check_head(cfg, head)
    groups = layer_groups(cfg)
    probe = scores or weights

    def keep(layer: int, kept):  # the layer and head shown, on the host: one layer's scores at a time
        if layer != shown:
            return None
        return type(kept)(kept.scores[:, head].float().cpu() if scores else None,
                          kept.weights[:, head].float().cpu() if weights else None)

    out = _forward(lm, batch, backend="eager" if probe else backend, probe=keep if probe else False)
    b, t = batch.ids.shape
    shown_kind = cfg.layer_types[shown]
    # A chosen layer or kind narrows the view to that layer's mask.
    kinds = [shown_kind] if (kind is not None or layer is not None) else list(groups)
    kind_masks = {k: _applied(out.masks[k], b, t) for k in kinds}
    report = MaskReport(
        LAYER_MASK_KIND[shown_kind], kind_masks[shown_kind], batch.tokens, batch.valid.cpu(),
        cfg.window_of(shown), model_window=cfg.sliding_window if cfg.has_sliding_layers else None, kind_masks=kind_masks, layers=groups, layer=shown,
        source=display_name(lm.files.folder), arch=cfg.arch, dtype=str(lm.dtype).removeprefix("torch."),
        prompts=batch.prompts, chunk=cfg.chunk_of(shown),
        documents=None if batch.documents is None else batch.documents.tolist(),
    )
    report.blocks = kind_blocks(kind_masks, block_size)
    if probe:
        report.head = head
        kept = out.probes[shown]
        report.scores, report.weights = kept.scores, kept.weights  # (B, T, S) each, or None
    return report
