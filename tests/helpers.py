"""Helpers shared by the CLI-level tests: running the CLI in-process, checking one-line
errors, a word tokenizer for the tiny models, and the prompts the inspect tests share."""

from __future__ import annotations

import json

from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers

from attncli.cli import main

WORDS = ("the cat sat on mat a dog ran fast and then slept under big red tree while birds sang "
         "softly in warm morning light every day").split()
LONG = "the cat sat on the mat and then slept"  # 9 tokens: longer than the window of 4 + 2
SHORT = "a dog"


def run(capfd, *argv):
    """Run the CLI in-process: (exit code, stdout, stderr) of this call alone."""
    capfd.readouterr()  # drop output of fixtures that built checkpoints
    code = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def run_json(capfd, *argv):
    code, out, err = run(capfd, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_one_line_error(code, err, expected_code, words):
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    assert words in lines[0], lines[0]


def write_word_tokenizer(folder) -> None:
    """A word-level tokenizer with ids < 128 (the tiny test models' vocab), <pad> = 0."""
    vocab = {"<pad>": 0, "<unk>": 1}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    backend = Backend(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>"}))
