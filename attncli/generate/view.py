"""The terminal view of `attncli generate`: streamed text (one prompt), completions in
order (a batch), JSON Lines, and the stats line on stderr."""

from __future__ import annotations

import sys

from attncli.console import err, human_bytes, print_json


def _write(text: str) -> None:
    # Generated text goes out raw: rich would read "[...]" in it as markup.
    sys.stdout.write(text)
    sys.stdout.flush()


class GenerationView:
    """Shows a run as it goes: one prompt streams token by token; a batch prints each
    completion once it and every row before it are done, so output stays in order."""

    def __init__(self, tm, gen, prompts: list[str], *, stream: bool, echo: bool, as_json: bool):
        self.tm, self.gen, self.prompts = tm, gen, prompts
        self.stream, self.echo, self.as_json = stream, echo, as_json
        self.decoder = tm.tokenizer.incremental_decoder() if stream else None
        self.printed = 0  # rows already shown (batch / no-stream)
        self.started = False

    def step(self, step) -> None:
        if self.stream:
            if not self.started and self.echo:
                _write(self.prompts[0])
            self.started = True
            _write(self.tm.stream_piece(self.decoder, self.gen.rows[0], step.tokens[0]))
        elif not self.as_json:
            self._print_done_rows()

    def _print_done_rows(self, force: bool = False) -> None:
        rows = self.gen.rows
        while self.printed < len(rows) and (force or rows[self.printed].finish_reason is not None):
            i = self.printed
            text = self.tm.completion(rows[i])
            _write(("\n" if i else "") + (self.prompts[i] if self.echo else "") + text + "\n")
            self.printed += 1

    def finish(self, interrupted: bool = False) -> None:
        if self.stream:
            if self.started:
                _write(self.decoder.flush() + "\n")
        elif self.as_json:
            stats = self.gen.stats
            for prompt, row in zip(self.prompts, self.gen.rows):
                print_json(self.tm.record(prompt, row, stats, interrupted=interrupted))
        else:
            self._print_done_rows(force=True)
        if interrupted:
            generation_stats(self.gen.stats, batch=len(self.prompts), cache=self.gen.use_cache,
                             attn=self.gen.backend, device=self.tm.lm.device, dtype=self.tm.lm.dtype)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else (f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def kernels_label(kernels: dict[str, str | None] | None, attn: str) -> str:
    """"sdpa/flash" when prefill and decode ran one kernel, else "prefill sdpa/flash, decode
    sdpa/efficient"; the backend's name when nothing was recorded."""
    named = {phase: k for phase, k in (kernels or {}).items() if k}
    if not named:
        return attn
    if len(set(named.values())) == 1:
        return next(iter(named.values()))
    return ", ".join(f"{phase} {k}" for phase, k in named.items())


def generation_stats(stats, *, batch: int, cache: bool, attn: str, device, dtype, tp=None) -> None:
    """One stats line on stderr (stdout stays clean for the text or JSON)."""
    rate = "-" if stats.tokens_per_s is None else f"{stats.tokens_per_s:.1f} tok/s"
    parts = [
        f"prompt {stats.prompt_tokens} tok" + (f" ({batch} rows)" if batch > 1 else ""),
        f"new {stats.new_tokens} tok",
        f"ttft {_ms(stats.ttft_s)}",
        f"decode {rate}",
        f"total {_ms(stats.total_s)}",
        f"KV cache {human_bytes(stats.kv_cache_bytes)}" if cache else "no cache",
        f"peak mem +{human_bytes(stats.peak_memory_bytes)}",
        f"{kernels_label(stats.attn_kernels, attn)}, {device}, {str(dtype).replace('torch.', '')}"
        + (f", threads {_threads()}" if str(device) == "cpu" else "") + (f", tp {tp.world} {tp.backend}" if tp else ""),
    ]
    if stats.seed is not None:
        parts.append(f"seed {stats.seed}")
    if stats.compile_s is not None:
        parts.append(f"compiled in {_ms(stats.compile_s)} (not in the timings)")
    if stats.interrupted:
        parts.insert(0, "interrupted")
    err.print(" | ".join(parts), markup=False, highlight=False)
