"""Text in, text out: a model with its tokenizer, on top of attncli.generate.

This is what `attncli generate` runs, callable from Python:

    from attncli import TextModel, generate_text
    for piece in generate_text("The cat sat on the", max_new_tokens=20):
        print(piece, end="", flush=True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from attncli.generate.loop import Generation, GenerationStats, Row
from attncli.checkpoint.files import default_model_path
from attncli.checkpoint.load import LoadedModel, load_model
from attncli.generate.sampling import Sampling
from attncli.checkpoint.tokenizer import Tokenizer


@dataclass
class TextModel:
    lm: LoadedModel
    tokenizer: Tokenizer

    @classmethod
    def load(cls, path: str | Path | None = None, *, device: str = "auto", dtype: str = "auto") -> "TextModel":
        lm = load_model(path or default_model_path(), device=device, dtype=dtype)
        return cls(lm, Tokenizer.from_dir(lm.files.folder))

    @property
    def eos_token_ids(self) -> list[int]:
        """The model's (generation_config/config.json) and the tokenizer's, merged."""
        ids = list(self.lm.config.eos_token_ids)
        return ids + [i for i in self.tokenizer.eos_token_ids if i not in ids]

    @property
    def pad_token_id(self) -> int:
        # Padding positions are masked out, so any valid id serves; prefer the declared one.
        for candidate in (self.tokenizer.pad_token_id, self.lm.config.pad_token_id, *self.eos_token_ids):
            if candidate is not None:
                return candidate
        return 0

    def start(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        use_cache: bool = True,
        sampling: Sampling = Sampling(),
        ignore_eos: bool = False,
        backend: str = "sdpa",
        compile: bool = False,
    ) -> Generation:
        """A ready, not yet started, Generation over ``prompts`` (iterate it to run)."""
        ids = self.tokenizer.encode_batch(list(prompts))
        return Generation(
            self.lm.model, ids, max_new_tokens=max_new_tokens, use_cache=use_cache, sampling=sampling,
            eos_token_ids=() if ignore_eos else self.eos_token_ids, pad_token_id=self.pad_token_id,
            backend=backend, compile=compile,
        )

    @staticmethod
    def stream_piece(decoder, row: Row, token: int | None) -> str:
        """The text ``token`` adds to ``row``'s stream: none for a row already finished
        (token None) or for the EOS that finishes it, as in ``completion``."""
        if token is None or row.finish_reason == "eos":
            return ""
        return decoder.push(token)

    def completion(self, row: Row) -> str:
        """The text of a row's new tokens; a final EOS token ends the text, it is not part of it."""
        tokens = row.tokens[:-1] if row.finish_reason == "eos" else row.tokens
        return self.tokenizer.decode(tokens)

    def record(self, prompt: str, row: Row, stats: GenerationStats, interrupted: bool = False) -> dict[str, Any]:
        """One JSON Lines object of `attncli generate --json` (shape fixed by docs/CLI.md);
        a row cut short by Ctrl-C finishes as "interrupted"."""
        return {
            "prompt": prompt,
            "prompt_tokens": row.prompt_tokens,
            "tokens": row.tokens,
            "text": self.completion(row),
            "finish_reason": row.finish_reason or ("interrupted" if interrupted else None),
            "stats": {
                "ttft_s": stats.ttft_s,
                "tokens_per_s": stats.row_tokens_per_s(row),
                "peak_memory_bytes": stats.peak_memory_bytes,
                "new_tokens": len(row.tokens),
                "total_s": row.done_s,
                "kv_cache_bytes": stats.kv_cache_bytes,
                "attn_kernels": stats.attn_kernels,
            },
        }


def generate_text(
    prompt: str, *, model: TextModel | str | Path | None = None, **options: Any
) -> Iterator[str]:
    """Stream the continuation of one prompt as UTF-8-safe text pieces. ``options`` are
    those of ``TextModel.start``; ``model`` a TextModel, a path, or None (the default)."""
    tm = model if isinstance(model, TextModel) else TextModel.load(model)
    gen = tm.start([prompt], **options)
    decoder = tm.tokenizer.incremental_decoder()
    for step in gen:
        piece = tm.stream_piece(decoder, gen.rows[0], step.tokens[0])
        if piece:
            yield piece
    rest = decoder.flush()
    if rest:
        yield rest


def read_prompts(path: str, stdin=None) -> list[str]:
    """Prompts from a file (``-``: stdin): one per line, or JSON Lines with a "prompt" field
    (every non-empty line an object). Blank lines are skipped; none left is an error."""
    import json
    import sys
    from pathlib import Path

    from attncli.errors import BadInputError

    if path == "-":
        text = (stdin or sys.stdin).read()
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise BadInputError(f"--prompts-file {path}: no such file")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise BadInputError(f"--prompts-file {path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise BadInputError(f"--prompts-file {path}: no prompts in it")
    if all(line.lstrip().startswith("{") for line in lines):
        prompts = []
        for n, line in enumerate(lines, 1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise BadInputError(f"--prompts-file {path}: line {n} is not JSON ({err.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
                raise BadInputError(f"--prompts-file {path}: line {n} has no string \"prompt\" field")
            prompts.append(obj["prompt"])
        return prompts
    return lines
