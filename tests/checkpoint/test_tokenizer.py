"""Tests for attncli.tokenizer, on tiny tokenizers trained at test time.

Three families cover the decoders met in practice: GPT-2-style byte-level BPE,
Llama-2-style SentencePiece BPE (Metaspace + byte fallback, decoder that strips
the leading space) and a plain Metaspace decoder. BOS handling is checked
against transformers' own fast tokenizer on the same folders.
"""

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as Backend
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from attncli.errors import BadInputError, ModelLoadError
from attncli.checkpoint.tokenizer import Tokenizer

WORDS = (
    "the cat sat on mat dog ran fast hello world model token stream text "
    "café naïve Zürich São Paulo crème brûlée façade über"
).split()
EXOTIC = ["日本語", "東京", "こんにちは", "🐱", "👍🏽", "🇫🇷", "👨‍👩‍👧", "😀"]
SAMPLES = [
    "Hello world",
    "A café in Zürich, a naïve idea in São Paulo.",
    "日本語のテキスト",
    "cats 🐱 and thumbs 👍🏽 and flags 🇫🇷 and families 👨‍👩‍👧",
    "unseen: 🦀 ₿ ǅ Ω",
    "  leading spaces, trailing  ",
    "",
]


def _corpus() -> list[str]:
    rng = random.Random(0)
    vocab = WORDS * 3 + EXOTIC
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 9))) for _ in range(300)]


def _write(folder: Path, backend: Backend, config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def _byte_level() -> Backend:
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|begin_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer)
    return backend


def _sentencepiece(decoder) -> Backend:
    """Metaspace BPE with <0xNN> byte-fallback tokens, like Llama 2's tokenizer.json."""
    backend = Backend(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    backend.train_from_iterator(_corpus(), trainer)
    # The trainer cannot emit byte tokens, so add them to the model vocab by hand.
    spec = json.loads(backend.to_str())
    vocab = spec["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    spec["model"]["byte_fallback"] = True
    backend = Backend.from_str(json.dumps(spec))
    backend.decoder = decoder
    return backend


LLAMA2_DECODER = decoders.Sequence(
    [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
)
LLAMA_CONFIG = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True}


def _bos_template(backend: Backend, bos: str) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, backend.token_to_id(bos))]
    )


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tok")
    out = {}
    gpt2 = _byte_level()
    out["gpt2"] = _write(root / "gpt2", gpt2, {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})

    gpt2.post_processor = processors.Sequence(
        [processors.ByteLevel(trim_offsets=False), _bos_template(gpt2, "<|begin_of_text|>")]
    )
    out["llama3"] = _write(
        root / "llama3", gpt2, {"bos_token": "<|begin_of_text|>", "eos_token": "<|endoftext|>"}
    )

    sp = _sentencepiece(LLAMA2_DECODER)
    sp.post_processor = _bos_template(sp, "<s>")
    out["llama2"] = _write(root / "llama2", sp, LLAMA_CONFIG)
    sp.post_processor = None
    out["llama_addbos"] = _write(root / "llama_addbos", sp, LLAMA_CONFIG)
    out["llama_addeos"] = _write(root / "llama_addeos", sp, {**LLAMA_CONFIG, "add_eos_token": True})

    out["metaspace"] = _write(root / "metaspace", _sentencepiece(decoders.Metaspace()), {"eos_token": "</s>"})
    return out


@pytest.fixture(scope="module")
def toks(dirs) -> dict[str, Tokenizer]:
    return {name: Tokenizer.from_dir(folder) for name, folder in dirs.items()}


def _transformers():
    try:
        import transformers
    except ImportError:  # CI installs it; this only spares a bare checkout
        transformers = pytest.importorskip("transformers")
    return transformers


# -- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("text", SAMPLES)
def test_byte_level_roundtrip(toks, text):
    tok = toks["gpt2"]
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("text", ["café naïve Zürich", "日本語", "🐱 👍🏽 🇫🇷 🦀"])
def test_sentencepiece_roundtrip_uses_byte_fallback(toks, text):
    tok = toks["llama2"]
    ids = tok.encode(text)
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text


# -- incremental decoding ----------------------------------------------------------


def _stream(tok: Tokenizer, ids: list[int], skip: bool = False) -> list[str]:
    dec = tok.incremental_decoder(skip_special_tokens=skip)
    return [dec.push(i) for i in ids] + [dec.flush()]


ALPHABET = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(list("  éïüçã日本語語🐱👍🏽🇫🇷🦀😀\u200d\n") + EXOTIC + ["<|endoftext|>", "</s>"]),
)


@settings(max_examples=50, deadline=None)
@given(text=st.lists(ALPHABET, max_size=30).map("".join), skip=st.booleans())
@pytest.mark.parametrize("name", ["gpt2", "llama2", "metaspace"])
def test_incremental_matches_full_decode(toks, name, text, skip):
    tok = toks[name]
    ids = tok.encode(text)
    chunks = _stream(tok, ids, skip)
    full = tok.decode(ids, skip_special_tokens=skip)
    assert "".join(chunks) == full
    if "\ufffd" not in full:
        assert not any("\ufffd" in c for c in chunks)


def test_emoji_split_across_tokens_is_emitted_whole(toks):
    tok = toks["gpt2"]
    prefix = tok.encode("I like ")
    crab = tok.encode("🦀")  # not in the corpus, so it stays split into byte pieces
    assert len(crab) >= 2
    dec = tok.incremental_decoder()
    assert "".join(dec.push(i) for i in prefix) == "I like "
    assert [dec.push(i) for i in crab] == [""] * (len(crab) - 1) + ["🦀"]
    assert dec.flush() == ""


def test_byte_fallback_run_is_held_until_it_ends(toks):
    tok = toks["llama2"]
    ids = tok.encode("🦀 cat", add_special_tokens=False)
    assert len(ids) == 6  # "▁", four <0xNN> byte tokens, "▁cat"
    assert _stream(tok, ids) == ["", "", "", "", "", "🦀 cat", ""]
    # "=" alone is valid, but an invalid byte after it turns the whole run into
    # U+FFFDs in decode(); emitting "=" early would contradict the final text.
    eq, bad1, bad2 = (tok.backend.token_to_id(t) for t in ("<0x3D>", "<0xE9>", "<0xF9>"))
    assert "".join(_stream(tok, [eq, bad1, bad2])) == tok.decode([eq, bad1, bad2]) == "\ufffd" * 3


@settings(max_examples=50, deadline=None)
@given(data=st.data(), skip=st.booleans())
@pytest.mark.parametrize("name", ["gpt2", "llama2", "metaspace"])
def test_incremental_matches_full_decode_for_arbitrary_ids(toks, name, data, skip):
    # Models, random-weight ones above all, emit id sequences no text encodes to.
    tok = toks[name]
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=25))
    assert "".join(_stream(tok, ids, skip)) == tok.decode(ids, skip_special_tokens=skip)


def test_leading_space_survives_sentencepiece_stream(toks):
    tok = toks["llama2"]
    ids = tok.encode("hello world model", add_special_tokens=False)
    naive = "".join(tok.decode([i]) for i in ids)
    assert naive == "helloworldmodel"  # why decoding tokens one by one is wrong
    chunks = _stream(tok, ids)
    assert "".join(chunks) == "hello world model"
    assert chunks[0] == "hello"


def test_skipped_special_tokens_keep_the_space(toks):
    tok = toks["metaspace"]
    eos = tok.eos_token_ids[0]
    cat, dog = (tok.encode(t, add_special_tokens=False) for t in ("cat", " dog"))
    ids = cat + [eos] * 50 + dog
    assert "".join(_stream(tok, ids, skip=True)) == tok.decode(ids, skip_special_tokens=True) == "cat dog"


def test_incremental_window_stays_bounded(toks):
    tok = toks["gpt2"]
    ids = tok.encode("the cat sat on the mat 🐱 café 日本語 " * 200)
    dec = tok.incremental_decoder()
    longest = 0
    out = []
    for i in ids:
        out.append(dec.push(i))
        longest = max(longest, len(dec._window))
    out.append(dec.flush())
    assert "".join(out) == tok.decode(ids)
    assert longest <= 8


def test_flush_emits_invalid_tail(toks):
    tok = toks["gpt2"]
    partial = tok.encode("🦀")[:-1]
    dec = tok.incremental_decoder()
    assert [dec.push(i) for i in partial] == [""] * len(partial)
    assert dec.flush() == tok.decode(partial) == "\ufffd"


# -- BOS / EOS against transformers -----------------------------------------------


def _auto_ids(folder: Path, text: str, add_special_tokens: bool = True) -> list[int]:
    hf = _transformers().AutoTokenizer.from_pretrained(str(folder))
    return hf.encode(text, add_special_tokens=add_special_tokens)


def _fast_ids(folder: Path, text: str, add_special_tokens: bool = True) -> list[int]:
    """transformers' fast tokenizer built from the same files, config passed explicitly."""
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    hf = _transformers().PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **config)
    return hf.encode(text, add_special_tokens=add_special_tokens)


@pytest.mark.parametrize("name", ["gpt2", "llama3", "llama2"])
def test_post_processor_bos_matches_transformers(dirs, toks, name):
    tok = toks[name]
    for text in SAMPLES:
        for special in (True, False):
            ours = tok.encode(text, add_special_tokens=special)
            assert ours == _auto_ids(dirs[name], text, special) == _fast_ids(dirs[name], text, special)
    ids = tok.encode("hello")
    if name == "gpt2":
        assert ids == tok.encode("hello", add_special_tokens=False)
    else:
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1


@pytest.mark.parametrize("name", ["llama_addbos", "llama_addeos"])
def test_config_add_bos_eos_matches_transformers(dirs, toks, name):
    tok = toks[name]
    for text in SAMPLES:
        for special in (True, False):
            assert tok.encode(text, add_special_tokens=special) == _fast_ids(dirs[name], text, special)
    ids = tok.encode("hello")
    assert ids[0] == tok.bos_token_id == 1
    assert (ids[-1] == tok.eos_token_ids[0]) == (name == "llama_addeos")
    assert tok.encode("hello", add_special_tokens=False) == ids[1:len(ids) - (name == "llama_addeos")]


def test_encode_batch_matches_encode(toks):
    for tok in toks.values():
        assert tok.encode_batch(SAMPLES) == [tok.encode(t) for t in SAMPLES]
        assert tok.encode_batch(SAMPLES, False) == [tok.encode(t, False) for t in SAMPLES]


# -- special token ids ---------------------------------------------------------------


def test_special_ids_from_string_and_dict_forms(dirs, tmp_path):
    folder = tmp_path / "forms"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((dirs["llama_addbos"] / "tokenizer.json").read_bytes())
    eos = {"__type": "AddedToken", "content": "</s>", "lstrip": False, "normalized": False,
           "rstrip": False, "single_word": False}
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": eos}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"pad_token": {"content": "<unk>"}}))
    tok = Tokenizer.from_dir(folder)
    assert (tok.bos_token_id, tok.eos_token_ids, tok.pad_token_id) == (1, [2], 0)
    hf = _transformers().AutoTokenizer.from_pretrained(str(folder))
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (1, 2, 0)


def test_several_eos_and_missing_config(dirs, toks):
    config = {"eos_token": ["</s>", {"content": "<unk>"}]}
    tok = Tokenizer.from_file(dirs["llama2"] / "tokenizer.json", config)
    assert tok.eos_token_ids == [2, 0]
    bare = Tokenizer.from_file(dirs["gpt2"] / "tokenizer.json")
    assert (bare.bos_token_id, bare.eos_token_ids, bare.pad_token_id) == (None, [], None)
    assert toks["gpt2"].bos_token_id == toks["gpt2"].eos_token_ids[0] == 0
    # Without a config the template still reveals the BOS.
    assert Tokenizer.from_file(dirs["llama3"] / "tokenizer.json").bos_token_id == 1


def test_vocab_size_counts_added_tokens(toks):
    assert toks["gpt2"].vocab_size == toks["gpt2"].backend.get_vocab_size(with_added_tokens=True) == 400
    sp = toks["llama2"]
    assert sp.vocab_size == sp.backend.get_vocab_size(with_added_tokens=True)
    assert sp.vocab_size > sp.backend.token_to_id("<0xFF>")


# -- token strings ---------------------------------------------------------------------


def test_token_strings_readable_and_raw_fallback(toks):
    tok = toks["gpt2"]
    assert tok.backend.token_to_id("Ġcat") is not None
    assert tok.token_strings(tok.encode(" cat")) == [" cat"]
    assert tok.token_strings([0]) == ["<|endoftext|>"]
    crab = tok.encode("🦀")
    assert tok.token_strings(crab) == [tok.backend.id_to_token(i) for i in crab]
    assert all("\ufffd" not in s for s in tok.token_strings(crab))

    sp = toks["llama2"]
    pieces = sp.token_strings(sp.encode("🦀", add_special_tokens=False))
    assert pieces[1:] == ["<0xF0>", "<0x9F>", "<0xA6>", "<0x80>"]
    assert sp.token_strings([1]) == ["<s>"]
    with pytest.raises(BadInputError):
        sp.token_strings([10**6])


# -- errors ------------------------------------------------------------------------


def test_missing_tokenizer_json_is_bad_input(tmp_path):
    with pytest.raises(BadInputError) as info:
        Tokenizer.from_dir(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "tokenizer.json" in message and "\n" not in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("content", ["{not json", "{}", '{"model": {"type": "Nope"}}', "[1, 2]"])
def test_corrupt_tokenizer_json_is_load_error(tmp_path, content):
    (tmp_path / "tokenizer.json").write_text(content)
    with pytest.raises(ModelLoadError) as info:
        Tokenizer.from_dir(tmp_path)
    assert "tokenizer.json" in str(info.value) and "\n" not in str(info.value)


def test_corrupt_tokenizer_config_is_load_error(dirs, tmp_path):
    (tmp_path / "tokenizer.json").write_bytes((dirs["gpt2"] / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(ModelLoadError, match="tokenizer_config.json"):
        Tokenizer.from_dir(tmp_path)


def test_truncation_and_padding_in_tokenizer_json_are_ignored(dirs, tmp_path):
    backend = Backend.from_file(str(dirs["gpt2"] / "tokenizer.json"))
    backend.enable_truncation(max_length=3)
    backend.enable_padding(pad_id=0, pad_token="<|endoftext|>")
    folder = _write(tmp_path / "trunc", backend, {"eos_token": "<|endoftext|>"})
    tok = Tokenizer.from_dir(folder)
    texts = ["the cat sat on the mat again", "dog"]
    batch = tok.encode_batch(texts)
    assert [len(ids) for ids in batch] == [len(tok.encode(t)) for t in texts]
    assert len(batch[0]) > 3 and len(batch[1]) < len(batch[0])
    hf = _transformers().AutoTokenizer.from_pretrained(str(folder))
    assert batch == [hf.encode(t) for t in texts]
