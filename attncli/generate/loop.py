"""Token generation: prefill, decode steps with or without a KV cache, left-padded batches.

``Generation`` is an iterator over steps; each step gives one new token per row (None
for a row that has already finished). Rows, stats and timings stay readable at any
point, so an interrupted run can still report what it made.

Without a cache every step re-runs the whole sequence: the O(T^2)-per-token baseline
the cache exists to avoid, kept on purpose so the two can be compared.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from attncli.errors import BadInputError
from attncli.generate.compiled import bucket, compiled_step
from attncli.generate.sampling import Sampling, sample
from attncli.memory import PeakMemory, synchronize
from attncli.model.attention.kernels import recording
from attncli.model.cache import KVCache
from attncli.model.transformer import Transformer

Tensor = torch.Tensor


@dataclass
class Row:
    prompt_tokens: list[int]
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "eos" | "length"; None while running or if interrupted
    done_s: float | None = None  # seconds from the start of the prefill to its last token


@dataclass
class Step:
    index: int
    tokens: list[int | None]  # (B,) the new token of each row; None where the row had finished


@dataclass
class GenerationStats:
    prompt_tokens: int  # real prompt tokens over all rows (padding excluded)
    new_tokens: int
    ttft_s: float | None  # prefill start -> first new token
    decode_s: float | None  # first new token -> last new token
    tokens_per_s: float | None  # new tokens after the first, over decode_s (all rows)
    total_s: float
    kv_cache_bytes: int
    peak_memory_bytes: int
    seed: int | None
    interrupted: bool = False
    compile_s: float | None = None  # --compile's decode step or flex's kernels, compiled before the clock started
    attn_kernels: dict[str, str] | None = None  # the attention kernel that ran: {"prefill": ..., "decode": ...}

    def row_tokens_per_s(self, row: Row) -> float | None:
        if self.ttft_s is None or row.done_s is None or len(row.tokens) < 2:
            return None
        span = row.done_s - self.ttft_s
        return (len(row.tokens) - 1) / span if span > 0 else None


def check_max_new_tokens(n: int) -> None:
    if n < 1:
        raise BadInputError(f"--max-new-tokens must be >= 1, got {n}")


def check_context(model: Transformer, prompt_len: int, max_new_tokens: int) -> None:
    """Refuse, before any work, a run the model cannot position: learned positions end at
    the table, and RoPE models are only trained up to their context. A model whose every
    layer is windowed (Mistral) attends W keys at most, so it may run past its context."""
    cfg = model.cfg
    total = prompt_len + max_new_tokens
    if total > cfg.context_length and not cfg.fully_windowed:
        raise BadInputError(
            f"prompt ({prompt_len} tokens) + --max-new-tokens ({max_new_tokens}) = {total} exceeds "
            f"the model's context of {cfg.context_length} tokens"
        )


def check_token_ids(prompts: Sequence[Sequence[int]], vocab_size: int) -> None:
    """Refuse ids the embedding has no row for before they reach the device: on CUDA an
    out-of-range lookup is a device-side assert that poisons the process, not an error."""
    for i, p in enumerate(prompts):
        bad = next((t for t in p if not 0 <= t < vocab_size), None)
        if bad is not None:
            where = f"prompt {i + 1}" if len(prompts) > 1 else "the prompt"
            raise BadInputError(f"token id {bad} in {where} is outside the model's vocabulary (0..{vocab_size - 1}): "
                                "is the tokenizer the model's?")


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """Token ids (B, T) right-aligned, and the mask (B, T) of real tokens, or None when
    no row needs padding (which lets SDPA use its causal fast path)."""
    longest = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, longest - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, longest - len(p) :] = 1
    padded = bool((mask == 0).any())
    return ids.to(device), (mask.to(device) if padded else None)


class Generation:
    def __init__(
        self,
        model: Transformer,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int = 64,
        use_cache: bool = True,
        sampling: Sampling = Sampling(),
        eos_token_ids: Sequence[int] = (),
        pad_token_id: int = 0,
        backend: str = "sdpa",
        compile: bool = False,
    ):
        if compile and not use_cache:
            raise BadInputError("--compile compiles the cached decode step: it needs the KV cache (drop --no-cache)")
        if backend == "flex" and compile:
            raise BadInputError("--attn flex compiles its own kernel; drop --compile (it compiles the sdpa/eager step)")
        if backend == "flex" and not use_cache:
            raise BadInputError("--attn flex compiles one kernel per sequence length, and without the cache every step "
                                "is a new length: use --attn sdpa or eager for the no-cache baseline")
        if not prompts or any(len(p) == 0 for p in prompts):
            raise BadInputError("every prompt must have at least one token")
        check_max_new_tokens(max_new_tokens)
        check_token_ids(prompts, model.cfg.vocab_size)
        check_context(model, max(len(p) for p in prompts), max_new_tokens)
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.use_cache = use_cache
        self.sampling = sampling
        self.eos = frozenset(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.backend = backend
        self.compile = compile
        self._compile_s: float | None = None
        self.rows = [Row(list(p)) for p in prompts]
        self.cache: KVCache | None = None
        self._t0: float | None = None
        self._ttft: float | None = None
        self._end: float | None = None
        self._seed: int | None = None
        self._interrupted = False
        self._mem = PeakMemory(model.device)
        self._kernels: dict[str, str] = {}

    def _cache_len(self, prompt_len: int) -> int:
        """Slots for prompt + new tokens. A compiled step is specialised to the cache's
        shape, so with --compile the length is rounded up to a multiple of COMPILE_BUCKET
        (within the context): runs of similar lengths reuse one compiled step instead of
        recompiling (and past torch's recompile limit, falling back to eager)."""
        need = prompt_len + self.max_new_tokens
        if not (self.compile or self.backend == "flex"):  # flex too compiles for the cache's shape
            return need
        rounded = bucket(need)
        limit = self.model.cfg.max_position_embeddings
        return max(need, min(rounded, limit)) if limit else rounded

    @property
    def done(self) -> bool:
        return all(r.finish_reason is not None for r in self.rows)

    def __iter__(self) -> Iterator[Step]:
        device = self.model.device
        generator, self._seed = self.sampling.generator(device)
        if generator is not None and self.model.tp is not None and self.sampling.seed is None:
            self._seed = self.model.tp.same_int(self._seed)  # each rank drew its own: rank 0's for all
            generator.manual_seed(self._seed)
        ids, mask = left_pad([r.prompt_tokens for r in self.rows], self.pad_token_id, device)
        batch, prompt_len = ids.shape
        try:
            with torch.inference_mode(), self._mem:
                if self.compile:  # the compiled step's own cache: static addresses, reused
                    self.cache = compiled_step(self.model).cache_for(batch, self._cache_len(prompt_len))
                elif self.use_cache:
                    self.cache = KVCache(self.model.cfg, batch=batch, max_len=self._cache_len(prompt_len),
                                         dtype=self.model.dtype, device=device)
                if self.compile:
                    self.cache.has_padding = mask is not None  # as the prefill will leave it
                    self._compile_s = compiled_step(self.model).warm(self.cache, self.backend)
                    self._kernels["decode"] = compiled_step(self.model).kernel(self.cache, self.backend)
                if self.backend == "flex":
                    self._compile_s = self._warm_flex(ids, mask)
                row_pos = (mask.sum(-1, keepdim=True) if mask is not None
                           else torch.full((batch, 1), prompt_len, device=device))  # (B, 1) next positions
                synchronize(device)
                self._t0 = time.perf_counter()
                with recording(self.model.kernels) as log:  # a per-layer name lookup, not a sync
                    logits = self._forward(ids, mask)  # (B, V)
                self._kernels["prefill"] = log.name
                for index in range(self.max_new_tokens):
                    next_ids = sample(logits, self.sampling, generator)  # (B,)
                    tokens = next_ids.tolist()  # waits for the device: the token exists now
                    now = time.perf_counter() - self._t0
                    if self._ttft is None:
                        self._ttft = now
                    yield Step(index, self._record(tokens, now, last=index == self.max_new_tokens - 1))
                    if self.done:
                        break
                    step_mask = None if mask is None else torch.ones(batch, 1, dtype=mask.dtype, device=device)
                    if self.compile:
                        logits = compiled_step(self.model).step(next_ids[:, None], row_pos, self.cache, self.backend)
                        row_pos = row_pos + 1
                        continue
                    with recording(self.model.kernels) if index == 0 else nullcontext() as log:
                        if self.use_cache:
                            logits = self._forward(next_ids[:, None], step_mask)
                        else:
                            ids = torch.cat([ids, next_ids[:, None]], dim=1)
                            mask = None if mask is None else torch.cat([mask, step_mask], dim=1)
                            logits = self._forward(ids, mask)
                    if index == 0:
                        self._kernels["decode"] = log.name
        except KeyboardInterrupt:
            self._interrupted = True
            raise
        finally:
            if self._t0 is not None:
                self._end = time.perf_counter() - self._t0

    def _warm_flex(self, ids: Tensor, mask: Tensor | None) -> float:
        """Compile FlexAttention for this run's two shapes (the prefill, a decode step) before
        the clock starts, on a scratch cache of the same size; returns the seconds spent (one
        untimed prefill and step included, a small part of it)."""
        real, self.cache = self.cache, KVCache(self.model.cfg, batch=self.cache.batch, max_len=self.cache.max_len,
                                               dtype=self.model.dtype, device=ids.device)
        started = time.perf_counter()
        try:
            self._forward(ids, mask)
            self._forward(ids[:, -1:], None if mask is None else mask[:, -1:])
            synchronize(ids.device)
        finally:
            self.cache = real
        return time.perf_counter() - started

    def _forward(self, ids: Tensor, mask: Tensor | None) -> Tensor:
        out = self.model(ids, attention_mask=mask, cache=self.cache, backend=self.backend, last_only=True)
        return out.logits[:, -1]

    def _record(self, tokens: list[int], now: float, last: bool) -> list[int | None]:
        shown: list[int | None] = []
        for row, tok in zip(self.rows, tokens):
            if row.finish_reason is not None:
                shown.append(None)  # finished rows keep still; their slot is computed and ignored
                continue
            row.tokens.append(tok)
            row.done_s = now
            if tok in self.eos:
                row.finish_reason = "eos"
            elif last:
                row.finish_reason = "length"
            shown.append(tok)
        return shown

    @property
    def stats(self) -> GenerationStats:
        new = sum(len(r.tokens) for r in self.rows)
        decode_s = None
        rate = None
        if self._ttft is not None:
            last = max((r.done_s for r in self.rows if r.done_s is not None), default=self._ttft)
            decode_s = last - self._ttft
            after_first = new - sum(1 for r in self.rows if r.tokens)
            rate = after_first / decode_s if decode_s > 0 and after_first > 0 else None
        end = self._end if self._end is not None else (time.perf_counter() - self._t0 if self._t0 else 0.0)
        return GenerationStats(
            prompt_tokens=sum(len(r.prompt_tokens) for r in self.rows),
            new_tokens=new,
            ttft_s=self._ttft,
            decode_s=decode_s,
            tokens_per_s=rate,
            total_s=end,
            kv_cache_bytes=self.cache.nbytes if self.cache is not None else 0,
            peak_memory_bytes=self._mem.peak_bytes or (self._mem.read() if self._t0 else 0),
            seed=self._seed,
            interrupted=self._interrupted,
            compile_s=self._compile_s,
            attn_kernels=dict(self._kernels) or None,
        )


def generate(model: Transformer, prompts: Sequence[Sequence[int]], **options) -> Generation:
    """Python API: ``for step in generate(model, [ids], max_new_tokens=20): ...``; then
    ``.rows`` (tokens, finish_reason) and ``.stats``. Options as ``Generation``."""
    return Generation(model, prompts, **options)
