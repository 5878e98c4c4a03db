"""`attncli inspect-mask` end to end, short of rendering: the usage checks that need no
model first, then masks alone or a model's report on prompts (left-padded, or packed into
documents) or on arbitrary tokens, and the checks when asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from attncli.errors import BadInputError
from attncli.inspect import leakcheck, reports
from attncli.inspect import packed as packed_docs
from attncli.inspect.leakcheck import CheckResult
from attncli.inspect.reports import MaskReport


@dataclass
class Request:
    prompts: list[str] = field(default_factory=list)
    model: str | None = None
    seq_len: int | None = None
    kind: str | None = None
    window: int | None = None
    chunk: int | None = None
    pad: int = 0
    layer: int | None = None
    head: int | None = None
    scores: bool = False
    weights: bool = False
    check: bool = False
    block_size: int = 128
    packed: bool = False
    packed_positions: str = "reset"
    packed_mask: str = "document"
    device: str = "auto"
    dtype: str = "auto"
    attn: str = "sdpa"


def inspect(r: Request, *, default_model: Callable[[str | None], str]) -> tuple[MaskReport, CheckResult | None]:
    """The report (and the checks, with ``r.check``); ``default_model(r.model)`` names the
    model folder when prompts or --seq-len ask for one."""
    prompts, seq_len = r.prompts, r.seq_len
    window, pad, chunk, kind, layer, head = r.window, r.pad, r.chunk, r.kind, r.layer, r.head
    reports.check_window(window)
    if r.model is None and not prompts:
        if seq_len is None:
            raise BadInputError("give prompts (and -m MODEL), or --seq-len N for masks alone")
        if r.scores or r.weights or layer is not None or head is not None or r.packed:
            raise BadInputError("--scores, --weights, --layer, --head and --packed need a model (-m) and prompts")
        report = reports.masks_alone(seq_len, kind=kind, window=window, pad=pad, chunk=chunk, block_size=r.block_size)
        checks = leakcheck.check_alone(report) if r.check else None
    else:
        from attncli.checkpoint.load import load_config, load_model
        from attncli.checkpoint.tokenizer import Tokenizer

        if window is not None or pad or chunk is not None:
            raise BadInputError("--window and --pad are for masks alone (so is --chunk); a model's window and chunks "
                                "come from its config.json and its padding from prompts of different lengths")
        if r.packed and not prompts:
            raise BadInputError("--packed packs prompts: give two or more")
        if (r.packed_positions != "reset" or r.packed_mask != "document") and not r.packed:
            raise BadInputError("--packed-positions and --packed-mask apply with --packed")
        if prompts and seq_len is not None:
            raise BadInputError("give prompts or --seq-len, not both")
        if not prompts and seq_len is None:
            raise BadInputError("give prompts, or --seq-len N to run N arbitrary tokens through the model")
        path = default_model(r.model)
        cfg, files = load_config(path)
        reports.pick_layer(cfg, kind=kind, layer=layer)  # usage errors before the weights load
        reports.check_head(cfg, head)
        has_tokenizer = (files.folder / "tokenizer.json").is_file()
        tok = Tokenizer.from_dir(files.folder) if prompts or has_tokenizer else None
        lm = load_model(path, device=r.device, dtype=r.dtype)
        if r.packed:
            batch = packed_docs.encode_packed(tok, prompts, context=cfg.context_length, positions=r.packed_positions,
                                              mask=r.packed_mask)
        elif prompts:
            batch = reports.encode_prompts(tok, prompts, context=cfg.context_length)
        else:
            batch = reports.arbitrary_tokens(seq_len, vocab=cfg.vocab_size, context=cfg.context_length, tokenizer=tok)
        report = reports.model_report(lm, batch, kind=kind, layer=layer, head=head, scores=r.scores,
                                      weights=r.weights, backend=r.attn, block_size=r.block_size)
        checks = leakcheck.check_model(lm, batch, backend=r.attn) if r.check else None
    return report, checks
