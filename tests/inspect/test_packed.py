"""inspect-mask --packed: prompts packed into one sequence of documents (positions restart,
block-diagonal causal mask), the proof that no document sees another, and the two classic
bugs reproduced on purpose, each failing --check with exit 1 and naming the leak."""

from __future__ import annotations

import pytest

from helpers import assert_one_line_error, run, run_json

DOCS = ["the cat sat on the mat", "a dog ran fast", "birds sang softly"]  # 6, 4 and 3 words


def _packed(capfd, model_dir, *extra):
    return run(capfd, "inspect-mask", "-m", model_dir("llama"), *DOCS, "--packed", *extra)


def test_packed_json_has_documents_and_a_block_diagonal_mask(capfd, model_dir):
    doc = run_json(capfd, "inspect-mask", "-m", model_dir("llama"), *DOCS, "--packed")
    assert doc["documents"] == [0] * 6 + [1] * 4 + [2] * 3
    assert doc["tokens"][0] == "¶the" and doc["tokens"][6] == "¶a"
    mask = doc["mask"]
    for i, di in enumerate(doc["documents"]):
        for j, dj in enumerate(doc["documents"]):
            assert mask[i][j] == (j <= i and di == dj), (i, j)
    assert doc["blocks"]["full"]["partial"] == 1  # 13 slots: one block of 128


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_check_passes_on_a_sound_packing(capfd, model_dir, attn):
    code, out, err = run(capfd, "inspect-mask", "-m", model_dir("llama"), *DOCS, "--packed", "--check",
                         "--attn", attn)
    assert code == 0, err
    assert "documents (weights)" in out and "documents (positions)" in out and "0 failed" in out


def test_continuous_positions_fail_the_check(capfd, model_dir):
    code, out, err = _packed(capfd, model_dir, "--packed-positions", "continuous", "--check")
    assert_one_line_error(code, err, 1, "documents (positions)")
    code, out, err = _packed(capfd, model_dir, "--packed-positions", "continuous", "--check", "--json")
    import json

    rows = {r["name"]: r for r in json.loads(out)["checks"]}
    assert "document 1 starts at position 6" in rows["documents (positions)"]["detail"]
    assert rows["documents (weights)"]["result"] == "pass"  # the mask still holds: only positions are wrong


def test_a_missing_document_mask_fails_the_check_and_names_the_leak(capfd, model_dir):
    code, out, err = run(capfd, "inspect-mask", "-m", model_dir("llama"), *DOCS, "--packed", "--packed-mask",
                         "causal", "--check", "--attn", "eager", "--json")
    assert code == 1 and "documents (weights)" in err and "documents (behaviour, eager)" in err
    import json

    rows = {r["name"]: r for r in json.loads(out)["checks"]}
    assert rows["documents (weights)"]["result"] == "fail"
    assert "leaked into document" in rows["documents (weights)"]["detail"]
    assert rows["documents (behaviour, eager)"]["detail"].startswith("document ")
    assert rows["mask"]["result"] == "fail"  # the applied mask is not the block-diagonal one


@pytest.mark.parametrize("argv, words", [
    (["--packed"], "two or more prompts"),
    (["--packed-mask", "causal"], "apply with --packed"),
    (["--packed", "--packed-positions", "sideways"], "--packed-positions must be one of"),
])
def test_packed_usage_errors(capfd, model_dir, argv, words):
    prompts = DOCS[:1] if argv == ["--packed"] else DOCS
    code, _, err = run(capfd, "inspect-mask", "-m", model_dir("llama"), *prompts, *argv)
    assert_one_line_error(code, err, 2, words)
