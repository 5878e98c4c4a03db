"""Text <-> token ids for Hugging Face-layout model folders.

Wraps a ``tokenizers.Tokenizer`` loaded from ``tokenizer.json`` and applies the
special-token settings from ``tokenizer_config.json`` / ``special_tokens_map.json``
the way transformers' fast tokenizer does, so prompts get the same ids the model
was trained with. ``transformers`` is deliberately not imported: it is slow to
import and heavy to install, and ``tokenizers`` already does the real work.
"""

from __future__ import annotations

import json
import operator
from pathlib import Path

from tokenizers import Tokenizer as _Backend

from attncli.errors import BadInputError, ModelLoadError

_REPLACEMENT = "\ufffd"


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _token_content(value) -> str | None:
    """Config files spell a token as a plain string or as a serialized AddedToken."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"cannot read {path}: {_one_line(err)}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"cannot read {path}: expected a JSON object")
    return data


class Tokenizer:
    """Encoder/decoder for one model; see ``from_dir``."""

    def __init__(self, backend: _Backend, config: dict | None = None):
        config = config or {}
        self.backend = backend
        # tokenizer.json may carry truncation/padding settings; transformers ignores
        # them unless asked per call, and silently cut or padded prompts would be a
        # nasty surprise, so turn them off.
        backend.no_truncation()
        backend.no_padding()
        self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)

        self.bos_token_id: int | None = self._id_of(config.get("bos_token"))
        self.pad_token_id: int | None = self._id_of(config.get("pad_token"))
        eos = config.get("eos_token")
        eos_list = eos if isinstance(eos, list) else [eos]
        self.eos_token_ids: list[int] = []
        for value in eos_list:
            token_id = self._id_of(value)
            if token_id is not None and token_id not in self.eos_token_ids:
                self.eos_token_ids.append(token_id)

        before, after = self._post_processor_specials()
        if self.bos_token_id is None and len(before) == 1:
            # A folder with only tokenizer.json still tells us its BOS via the template.
            self.bos_token_id = before[0]
        # Older Llama-style configs ask for BOS/EOS in tokenizer_config.json while
        # the post-processor does not add them; newer ones do both, and adding it
        # twice would hand the model a sequence it never saw in training.
        self._prepend_bos = bool(config.get("add_bos_token")) and (
            self.bos_token_id is not None and self.bos_token_id not in before
        )
        self._append_eos = bool(config.get("add_eos_token")) and bool(self.eos_token_ids) and (
            self.eos_token_ids[0] not in after
        )
        self._special_ids = frozenset(
            token_id for token_id, tok in backend.get_added_tokens_decoder().items() if tok.special
        )
        byte_ids = {backend.token_to_id(f"<0x{b:02X}>") for b in range(256)} - {None}
        probe = backend.token_to_id("<0x41>")
        fallback = probe is not None and backend.decode([probe], skip_special_tokens=False) == "A"
        self._fallback_byte_ids = frozenset(byte_ids if fallback else ())

    # -- loading -------------------------------------------------------------------

    @classmethod
    def from_dir(cls, folder: str | Path) -> "Tokenizer":
        folder = Path(folder)
        tokenizer_json = folder / "tokenizer.json"
        if not tokenizer_json.is_file():
            raise BadInputError(
                f"{folder}: no tokenizer.json there; a Hugging Face fast-tokenizer "
                "tokenizer.json is needed to encode and decode text"
            )
        config: dict = {}
        config_path = folder / "tokenizer_config.json"
        if config_path.is_file():
            config = _read_json(config_path)
        map_path = folder / "special_tokens_map.json"
        # Same precedence as transformers: the legacy special_tokens_map.json wins
        # unless the config is a modern one that lists added_tokens_decoder.
        if map_path.is_file() and "added_tokens_decoder" not in config:
            config = {**config, **_read_json(map_path)}
        return cls.from_file(tokenizer_json, config)

    @classmethod
    def from_file(cls, tokenizer_json: str | Path, config: dict | None = None) -> "Tokenizer":
        path = Path(tokenizer_json)
        if not path.is_file():
            raise BadInputError(f"{path}: no such tokenizer.json file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ModelLoadError(f"cannot read {path}: {_one_line(err)}") from None
        try:
            backend = _Backend.from_str(text)
        except Exception as err:  # tokenizers raises plain Exception for bad content
            # Parse it ourselves only now, to say which of the two went wrong.
            try:
                json.loads(text)
            except json.JSONDecodeError as json_err:
                raise ModelLoadError(f"{path} is not valid JSON: {_one_line(json_err)}") from None
            raise ModelLoadError(f"{path} is not a usable tokenizer: {_one_line(err)}") from None
        return cls(backend, config)

    def _id_of(self, value) -> int | None:
        content = _token_content(value)
        return None if content is None else self.backend.token_to_id(content)

    def _post_processor_specials(self) -> tuple[list[int], list[int]]:
        """Ids the post-processor puts before and after the text.

        Probing beats parsing the JSON: post-processors nest (Sequence, Template,
        Bert, Roberta, ...) and the probe sees exactly what encode will do.
        """
        enc = self.backend.encode("a", add_special_tokens=True)
        content = [i for i, seq in enumerate(enc.sequence_ids) if seq is not None]
        if not content:
            return enc.ids, enc.ids
        return enc.ids[: content[0]], enc.ids[content[-1] + 1 :]

    # -- encoding ------------------------------------------------------------------

    def _finish(self, ids: list[int], add_special_tokens: bool) -> list[int]:
        if add_special_tokens:
            if self._prepend_bos:
                ids = [self.bos_token_id, *ids]
            if self._append_eos:
                ids = [*ids, self.eos_token_ids[0]]
        return ids

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise BadInputError(f"text to encode must be a string, not {type(text).__name__}")
        _check_utf8(text)
        ids = self.backend.encode(text, add_special_tokens=add_special_tokens).ids
        return self._finish(ids, add_special_tokens)

    def encode_batch(self, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
        if not all(isinstance(t, str) for t in texts):
            raise BadInputError("texts to encode must all be strings")
        for t in texts:
            _check_utf8(t)
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return [self._finish(e.ids, add_special_tokens) for e in encodings]

    # -- decoding ------------------------------------------------------------------

    def _check_ids(self, ids) -> list[int]:
        # operator.index admits numpy/torch integer scalars but not floats.
        try:
            ids = [operator.index(token_id) for token_id in ids]
        except TypeError:
            raise BadInputError(f"token ids must be integers, got {list(ids)!r:.80}") from None
        if any(token_id < 0 for token_id in ids):
            raise BadInputError(f"token ids must not be negative, got {min(ids)}")
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        # tokenizers defaults skip_special_tokens to True; always pass it explicitly.
        return self.backend.decode(self._check_ids(ids), skip_special_tokens=skip_special_tokens)

    def token_strings(self, ids: list[int]) -> list[str]:
        pieces = []
        for token_id in self._check_ids(ids):
            raw = self.backend.id_to_token(token_id)
            if raw is None:
                raise BadInputError(f"token id {token_id} is outside the vocabulary (size {self.vocab_size})")
            text = self.backend.decode([token_id], skip_special_tokens=False)
            # A token holding part of a multi-byte character decodes to U+FFFD,
            # which would label every such cell the same; the vocab entry is unique.
            readable = text and (_REPLACEMENT not in text or _REPLACEMENT in raw)
            pieces.append(text if readable else raw)
        return pieces

    def incremental_decoder(self, skip_special_tokens: bool = False) -> "IncrementalDecoder":
        return IncrementalDecoder(self, skip_special_tokens)


class IncrementalDecoder:
    """Turns a stream of token ids into text chunks that are safe to print.

    The window holds the tokens of the last emitted chunk (context) followed by
    the tokens not yet emitted (pending). Each push decodes only that window and
    emits what it adds beyond the context's text. The context matters because
    decoders treat the first token specially (SentencePiece drops its leading
    space), so a token decoded alone can read differently than in the stream.
    Pending tokens are held while the text ends in U+FFFD: a byte-level or
    byte-fallback vocabulary splits one character across tokens, and a prefix
    then ends in a half character that the next token completes. With a
    ByteFallback decoder a run of <0xNN> tokens is also held until it ends.
    """

    # Bounds the work per token. Valid text seldom gets near it (a character is at
    # most 4 bytes); only a long run of byte-fallback characters or invalid bytes
    # does, and then the text is emitted as decoded so far.
    MAX_PENDING = 32

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False):
        self._backend = tokenizer.backend
        self._skip = skip_special_tokens
        self._skip_ids = tokenizer._special_ids if skip_special_tokens else frozenset()
        self._byte_ids = tokenizer._fallback_byte_ids
        self._reset()

    def _reset(self) -> None:
        self._window: list[int] = []
        self._read = 0  # window[:read] is context, window[read:] is pending
        self._context_text = ""

    def _decode(self, ids: list[int]) -> str:
        return self._backend.decode(ids, skip_special_tokens=self._skip)

    def push(self, token_id: int) -> str:
        """Return the text made final by ``token_id`` ("" while it is held back)."""
        if token_id in self._skip_ids:
            # decode() drops these before its decoder runs, so keeping them out of
            # the window is exact and stops them from becoming the only context.
            return ""
        self._window.append(token_id)
        text = self._decode(self._window)
        held = (
            len(text) <= len(self._context_text)
            or text.endswith(_REPLACEMENT)
            # A ByteFallback decoder turns a whole run of <0xNN> tokens into U+FFFDs
            # when any byte in it is invalid, so a later byte can still rewrite an
            # earlier valid one; the run is final only once another token ends it.
            or token_id in self._byte_ids
        )
        if held and len(self._window) - self._read < self.MAX_PENDING:
            return ""
        return self._emit(text)

    def _emit(self, text: str) -> str:
        chunk = text[len(self._context_text) :]
        self._window = self._window[self._read :]
        self._read = len(self._window)
        self._context_text = self._decode(self._window)
        return chunk

    def flush(self) -> str:
        """Return whatever is still pending and start a fresh stream."""
        chunk = ""
        if self._read < len(self._window):
            chunk = self._decode(self._window)[len(self._context_text) :]
        self._reset()
        return chunk


def _check_utf8(text: str) -> None:
    """A prompt with bytes that are not UTF-8 (a shell passes them through as surrogates)
    cannot be tokenized: say so, naming where."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise BadInputError(f"the prompt is not valid UTF-8 (byte {err.start} of it): re-encode it as UTF-8") from None
