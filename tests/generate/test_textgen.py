"""Text generation end to end: TextModel, generate_text and the `attncli generate` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from attncli.generate.text import TextModel, generate_text
from helpers import run
from hf_factory import save_text_model


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text-llama")
    save_text_model(folder, "llama")
    return folder


@pytest.fixture(scope="module")
def tm(text_model):
    return TextModel.load(text_model, device="cpu")


def test_json_lines_shape_and_order(capfd, text_model, tm):
    prompts = ["The cat sat", "A girl read a book in the café."]
    code, out, err = run(capfd, "generate", *prompts, "-m", str(text_model), "-n", "6", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["prompt"] for r in lines] == prompts
    for rec, prompt in zip(lines, prompts):
        assert set(rec) == {"prompt", "prompt_tokens", "tokens", "text", "finish_reason", "stats"}
        assert rec["prompt_tokens"] == tm.tokenizer.encode(prompt)
        assert len(rec["tokens"]) == 6 and rec["finish_reason"] == "length"
        assert rec["text"] == tm.tokenizer.decode(rec["tokens"])
        assert {"ttft_s", "tokens_per_s", "peak_memory_bytes"} <= set(rec["stats"])
        assert rec["stats"]["ttft_s"] > 0 and rec["stats"]["tokens_per_s"] > 0
    assert "new 12 tok" in err and "ttft" in err and "tok/s" in err  # stats on stderr, not stdout


def test_streamed_text_is_the_decoded_tokens(capfd, text_model, tm):
    """Byte-level tokens of a random model are often partial UTF-8: the stream must
    still add up to exactly the decoded text (never a broken piece)."""
    code, out, _ = run(capfd, "generate", "Zürich 🐱", "-m", str(text_model), "-n", "40", "--ignore-eos",
                       "--json", "-t", "1.0", "--seed", "5")
    rec = json.loads(out)
    code, out, _ = run(capfd, "generate", "Zürich 🐱", "-m", str(text_model), "-n", "40", "--ignore-eos",
                       "-t", "1.0", "--seed", "5")
    assert code == 0 and out == "Zürich 🐱" + tm.tokenizer.decode(rec["tokens"]) + "\n"
    code, out, _ = run(capfd, "generate", "Zürich 🐱", "-m", str(text_model), "-n", "40", "--ignore-eos",
                       "-t", "1.0", "--seed", "5", "--no-stream", "--no-echo")
    assert out == tm.tokenizer.decode(rec["tokens"]) + "\n"


def test_generate_text_api_streams_the_same_text(tm):
    pieces = list(generate_text("The dog ran", model=tm, max_new_tokens=12, ignore_eos=True))
    gen = tm.start(["The dog ran"], max_new_tokens=12, ignore_eos=True)
    for _ in gen:
        pass
    assert "".join(pieces) == tm.completion(gen.rows[0])
    assert all("\ufffd" not in p for p in pieces) or "\ufffd" in tm.completion(gen.rows[0])


def test_batch_text_output_in_prompt_order(capfd, text_model, tm):
    code, out, _ = run(capfd, "generate", "The cat", "The dog ran to the", "-m", str(text_model), "-n", "5")
    assert code == 0
    assert out.startswith("The cat") and "\n\nThe dog ran to the" in out


def test_eos_ends_the_text_and_is_not_printed(capfd, text_model, tm):
    gen = tm.start(["The cat"], max_new_tokens=8, ignore_eos=True)
    for _ in gen:
        pass
    # make the second greedy token the end-of-text token by telling the model so
    eos = gen.rows[0].tokens[1]
    tm2 = TextModel(tm.lm, tm.tokenizer)
    tm2.tokenizer.eos_token_ids  # the real one stays; add ours through the config
    tm2.lm.config.eos_token_ids = [eos]
    try:
        gen2 = tm2.start(["The cat"], max_new_tokens=8)
        for _ in gen2:
            pass
        row = gen2.rows[0]
        assert row.finish_reason == "eos" and row.tokens == gen.rows[0].tokens[:2]
        assert tm2.completion(row) == tm.tokenizer.decode(row.tokens[:1])
        assert tm2.record("The cat", row, gen2.stats)["finish_reason"] == "eos"
    finally:
        tm2.lm.config.eos_token_ids = [0]


@pytest.mark.parametrize("args, words", [
    (["-n", "0"], "--max-new-tokens must be >= 1"),
    (["-t", "-1"], "--temperature must be >= 0"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--top-k", "0"], "--top-k must be >= 1"),
    (["--attn", "flash"], "unknown attention backend 'flash'"),
    (["-n", "300"], "exceeds the model's context of 256 tokens"),
])
def test_bad_options_are_one_line_exit_2(capfd, text_model, args, words):
    code, out, err = run(capfd, "generate", "The cat", "-m", str(text_model), *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err


def test_model_without_tokenizer_is_a_clear_error(capfd, saved):
    code, _, err = run(capfd, "generate", "hi", "-m", str(saved("llama")[0]))
    assert code == 2 and "no tokenizer.json" in err and len(err.strip().splitlines()) == 1


def test_prompt_from_stdin(text_model):
    out = subprocess.run([sys.executable, "-m", "attncli.cli", "generate", "-m", str(text_model), "-n", "3",
                          "--json"], input="The cat sat\n", capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["prompt"] == "The cat sat"


def test_ctrl_c_prints_what_was_made_and_exits_130(tmp_path):
    """SIGINT mid-run: the partial text is on stdout, the stats on stderr, exit 130."""
    folder = tmp_path / "long"
    save_text_model(folder, "llama", max_position_embeddings=100_000)
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "attncli.cli", "generate", "The cat", "-m", str(folder), "-n", "90000",
         "--ignore-eos", "--no-cache"],  # no cache: slow enough to be interrupted mid-way
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    first = proc.stdout.read(len("The cat") + 1)  # prompt echo plus at least one byte of output
    assert first.startswith(b"The cat")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "new " in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: interrupted")


def test_package_exports_the_text_api(tm):
    import attncli

    assert attncli.TextModel is TextModel and attncli.generate_text is generate_text
    assert attncli.Sampling(temperature=0.5).temperature == 0.5
    pieces = list(attncli.generate_text("The cat", model=tm, max_new_tokens=3, ignore_eos=True))
    assert isinstance("".join(pieces), str)
