"""Everything the CLI shows: consoles, tables, byte formatting. No model code here."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def error_line(message: str) -> None:
    # The message is data, not markup: "[plot]" or a shape "[64, 32]" must print as written.
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def print_json(obj: Any) -> None:
    # Plain print, not rich: scripts parse this.
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


_INFO_ROWS = [
    ("architecture", "architecture", str),
    ("parameters", "parameters", lambda v: f"{v:,} ({human_count(v)})"),
    ("layers", "layers", str),
    ("hidden size", "hidden_size", str),
    ("heads / kv heads", None, None),
    ("head dim", "head_dim", str),
    ("MLP width", "intermediate_size", str),
    ("vocab", "vocab_size", lambda v: f"{v:,}"),
    ("context length", "context_length", lambda v: f"{v:,}"),
    ("position", "position", str),
    ("sliding window", "sliding_window", lambda v: "none" if v is None else f"{v:,}"),
    ("tied embeddings", "tied_embeddings", lambda v: "yes" if v else "no"),
    ("checkpoint dtype", "checkpoint_dtype", lambda v: v or "unknown"),
    ("run dtype", "dtype", str),
    ("weights", "weight_bytes", human_bytes),
    ("KV cache / token", "kv_cache_bytes_per_token", human_bytes),
]


def info_table(info: dict[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    for label, key, fmt in _INFO_ROWS:
        if key is None:
            table.add_row(label, f"{info['heads']} / {info['kv_heads']}")
        else:
            table.add_row(label, fmt(info[key]))
    if info["sliding_layers"] and len(info["sliding_layers"]) != info["layers"]:
        table.add_row("sliding layers", ", ".join(map(str, info["sliding_layers"])))
    ctx = f"at context {info['context']:,}" + (f", batch {info['batch']}" if info["batch"] != 1 else "")
    table.add_row(f"KV cache {ctx}", human_bytes(info["kv_cache_bytes"]))
    table.add_row(f"memory {ctx}", f"{human_bytes(info['memory_bytes'])} (weights + KV cache)")
    return table


# ---- generate ----
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
                print_json(self.tm.record(prompt, row, stats))
        else:
            self._print_done_rows(force=True)
        if interrupted:
            generation_stats(self.gen.stats, batch=len(self.prompts), cache=self.gen.use_cache,
                             attn=self.gen.backend, device=self.tm.lm.device, dtype=self.tm.lm.dtype)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else (f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s")


def generation_stats(stats, *, batch: int, cache: bool, attn: str, device, dtype) -> None:
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
        f"{attn}, {device}, {str(dtype).replace('torch.', '')}",
    ]
    if stats.seed is not None:
        parts.append(f"seed {stats.seed}")
    if stats.compile_s is not None:
        parts.append(f"compiled in {_ms(stats.compile_s)} (not in the timings)")
    if stats.interrupted:
        parts.insert(0, "interrupted")
    err.print(" | ".join(parts), markup=False, highlight=False)
