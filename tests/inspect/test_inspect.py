"""inspect-mask (attncli.inspect): masks element by element, the masks real checkpoints
apply to padded prompts, scores and weights, and one-line errors for bad input. The
--check tests are in test_leakcheck.py, the dump tests in test_dumps.py; all three use
tests/helpers.py and conftest's model_dir fixture."""

from __future__ import annotations

import re
import time

import pytest
import torch

from attncli.inspect import reports
from helpers import LONG, SHORT, WORDS, assert_one_line_error, run, run_json



def loop_mask(t, *, causal=True, window=None, pad=0):
    """Query i may see key j: by plain loops, the textbook definition."""
    return [[(not causal or j <= i) and (window is None or i - j < window) and j >= pad and True
             for j in range(t)] for i in range(t)]


# ---- masks alone ----
@pytest.mark.parametrize("kind, window, pad", [
    ("causal", None, 0), ("sliding", 3, 0), ("sliding", 3, 2), ("sliding", 1, 0), ("padding", None, 3),
    ("full", None, 0), ("full", None, 2), ("causal", None, 2),
])
def test_masks_alone_element_by_element(kind, window, pad):
    r = reports.masks_alone(9, kind=kind, window=window, pad=pad)
    assert r.mask.shape == (1, 9, 9) and r.kind == kind
    assert r.mask[0].tolist() == loop_mask(9, causal=kind != "full", window=window, pad=pad)
    assert r.tokens[0] == [None] * pad + [str(i) for i in range(pad, 9)]


def test_masks_alone_json_shape(capfd):
    doc = run_json(capfd, "inspect-mask", "--seq-len", 6, "--kind", "sliding", "--window", 2)
    assert set(doc) == {"tokens", "kind", "mask", "window", "blocks"}  # blocks: the kernel's view, added in round 2
    assert doc["kind"] == "sliding" and doc["window"] == 2 and doc["tokens"] == [str(i) for i in range(6)]
    assert doc["mask"] == loop_mask(6, window=2)
    assert all(type(v) is bool for row in doc["mask"] for v in row)
    doc = run_json(capfd, "inspect-mask", "--seq-len", 5, "--pad", 2)
    assert doc["kind"] == "padding" and doc["tokens"][:2] == [None, None] and doc["mask"] == loop_mask(5, pad=2)


def test_masks_alone_grid(capfd):
    code, out, _ = run(capfd, "inspect-mask", "--seq-len", 8, "--kind", "sliding", "--window", 3, "--pad", 1)
    assert code == 0
    lines = out.splitlines()
    row7 = next(x for x in lines if x.startswith("7 "))
    assert row7.split()[1:9] == ["·", "·", "·", "·", "·", "■", "■", "■"] and "3 keys" in row7
    assert "⚠ fully masked" in next(x for x in lines if x.startswith("0 "))
    assert "■ may attend" in out and "masked (-∞)" in out


def test_long_mask_renders_in_blocks_quickly(capfd):
    start = time.perf_counter()
    code, out, _ = run(capfd, "inspect-mask", "--seq-len", 4096, "--kind", "sliding", "--window", 1000, "--pad", 100)
    elapsed = time.perf_counter() - start
    assert code == 0 and elapsed < 10, elapsed
    assert "4,096 x 4,096 cells in" in out and "block = " in out and "100 fully masked" in out
    grid = [x for x in out.splitlines() if re.match(r"\s*\d+-\d+ ", x)]
    assert len(grid) == 21 and max(len(x) for x in grid) <= 100  # 200-slot blocks fit 80 columns


def test_block_downsampling_states():
    from attncli.inspect.render import downsample, downsample_mean

    mask = torch.tensor(loop_mask(10))  # lower triangle incl. diagonal
    grid = downsample(mask, 4)  # ragged 3 x 3 blocks
    assert grid.tolist() == [[1, 0, 0], [2, 1, 0], [2, 2, 1]]
    means = downsample_mean(torch.ones(10, 10), mask, 4)
    assert torch.isnan(means[0, 1]) and means[2, 2] == 1


# ---- a model on prompts ----
def test_window_shown_on_a_mistral_prompt_longer_than_the_window(capfd, model_dir):
    doc = run_json(capfd, "inspect-mask", "-m", model_dir("mistral-window"), LONG)
    assert doc["tokens"] == LONG.split() and doc["kind"] == "sliding" and doc["window"] == 4
    assert doc["layers"] == {"sliding": [0, 1]} and doc["layer"] == 0
    assert doc["mask"] == loop_mask(9, window=4)
    assert [sum(r) for r in doc["mask"]] == [1, 2, 3, 4, 4, 4, 4, 4, 4]


def test_padded_batch_never_attends_a_pad(capfd, model_dir):
    docs = run_json(capfd, "inspect-mask", "-m", model_dir("qwen2-sliding-layers"), LONG, SHORT, "--weights", "--layer", 2)
    assert isinstance(docs, list) and [d["prompt"] for d in docs] == [LONG, SHORT]
    assert docs[1]["tokens"] == [None] * 7 + ["a", "dog"]
    assert all(d["layers"] == {"full": [0], "sliding": [1, 2]} for d in docs)
    short = docs[1]
    assert short["kind"] == "sliding" and short["mask"] == loop_mask(9, window=4, pad=7)
    for i in range(9):
        assert not any(short["mask"][i][:7]) and all(w == 0 for w in short["weights"][i][:7])
    assert sum(short["weights"][8]) == pytest.approx(1, abs=1e-6)
    assert all(w == 0 for w in short["weights"][0])  # a padding query: zeros, not NaN


def test_each_layer_kind_is_rendered(capfd, model_dir):
    code, out, _ = run(capfd, "inspect-mask", "-m", model_dir("qwen2-sliding-layers"), LONG, SHORT)
    assert code == 0
    assert "layers 0 (full attention): causal mask" in out and "layers 1, 2 (sliding attention): sliding mask" in out
    assert "sequence 2 of 2: 'a dog' (7 padding slots)" in out and out.count("⚠ fully masked") == 14
    assert "8 slept" in out and "0 <pad>" in out


def test_kind_picks_layers_of_a_model(capfd, model_dir):
    folder = model_dir("qwen2-sliding-layers")
    doc = run_json(capfd, "inspect-mask", "-m", folder, LONG, "--kind", "sliding")
    assert doc["layer"] == 1 and doc["kind"] == "sliding"
    doc = run_json(capfd, "inspect-mask", "-m", folder, LONG, "--kind", "causal")
    assert doc["layer"] == 0 and doc["kind"] == "causal" and doc["mask"] == loop_mask(9)


def test_scores_and_weights_are_the_real_ones(capfd, model_dir, saved):
    """Our eager weights equal transformers' attention weights for the same checkpoint."""
    folder = model_dir("llama")
    doc = run_json(capfd, "inspect-mask", "-m", folder, LONG, "--scores", "--weights", "--layer", 1, "--head", 3)
    ref = saved("llama")[1]
    ids = torch.tensor([[WORDS.index(w) + 2 for w in LONG.split()]])
    with torch.no_grad():
        want = ref(input_ids=ids, output_attentions=True).attentions[1][0, 3]
    torch.testing.assert_close(torch.tensor(doc["weights"]), want)
    scores = doc["scores"]
    assert scores[0][1:] == [None] * 8 and all(v is not None for v in scores[8])
    probs = torch.softmax(torch.tensor([[float("-inf") if v is None else v for v in row] for row in scores]), -1)
    torch.testing.assert_close(probs, want)


def test_seq_len_with_a_model_runs_arbitrary_tokens(capfd, model_dir):
    doc = run_json(capfd, "inspect-mask", "-m", model_dir("gpt2"), "--seq-len", 12)
    assert len(doc["tokens"]) == 12 and all(isinstance(t, str) for t in doc["tokens"])
    assert doc["kind"] == "causal" and doc["mask"] == loop_mask(12)


def test_long_scores_and_weights_are_shaded_in_blocks(capfd, model_dir):
    code, out, _ = run(capfd, "inspect-mask", "-m", model_dir("gpt2"), "--seq-len", 40, "--scores", "--weights")
    assert code == 0
    assert "block = 4 x 4 slots; shade = mean weight over the visible cells" in " ".join(out.split())
    assert "shade = mean score" in out and "layer 0, head 0: weights (post-softmax)" in out


# ---- bad input: one line, exit 2 ----
@pytest.mark.parametrize("argv, words", [
    (["--seq-len", "5", "--kind", "sliding", "--window", "0"], "--window must be at least 1, got 0"),
    (["--seq-len", "5", "--kind", "sliding"], "--kind sliding needs --window W"),
    (["--seq-len", "5", "--kind", "padding"], "needs padding slots"),
    (["--seq-len", "5", "--kind", "diagonal"], "unknown --kind 'diagonal'"),
    (["--seq-len", "5", "--dump", "mask.txt"], "unknown extension '.txt'"),
    (["--seq-len", "5", "--dump", "/no/such/folder/m.json"], "folder /no/such/folder does not exist"),
    (["--seq-len", "5", "--scores"], "need a model (-m)"),
    ([], "--seq-len N for masks alone"),
])
def test_bad_input_without_a_model(capfd, argv, words):
    assert_one_line_error(*run(capfd, "inspect-mask", *argv)[::2], 2, words)


@pytest.mark.parametrize("argv, words", [
    (["--layer", "2"], "--layer 2 is out of range: the model has 2 layers (0..1)"),
    (["--layer", "-1"], "--layer -1 is out of range"),
    (["--head", "4", "--scores"], "--head 4 is out of range: the model has 4 heads (0..3)"),
    (["--kind", "sliding"], "this model has no sliding-attention layers"),
    (["--kind", "padding"], "padding is part of every layer's mask"),
    (["--window", "3"], "--window and --pad are for masks alone"),
    (["--seq-len", "100"], "give prompts or --seq-len, not both"),
])
def test_bad_input_with_a_model(capfd, model_dir, argv, words):
    assert_one_line_error(*run(capfd, "inspect-mask", "-m", model_dir("llama"), LONG, *argv)[::2], 2, words)


def test_prompts_without_a_model_use_the_embedded_one(capfd, monkeypatch):
    monkeypatch.delenv("ATTNCLI_MODEL", raising=False)
    doc = run_json(capfd, "inspect-mask", "The cat sat. It was fluffy.")
    assert doc["tokens"][1:4] == ["The", " cat", " sat"] and doc["layers"] == {"full": [0, 1, 2, 3]}


def test_no_model_anywhere_is_one_line(capfd, monkeypatch, tmp_path):
    import attncli.checkpoint.files as files

    monkeypatch.delenv("ATTNCLI_MODEL", raising=False)
    monkeypatch.setattr(files, "EMBEDDED_MODEL", tmp_path / "absent")
    assert_one_line_error(*run(capfd, "inspect-mask", "The cat")[::2], 2, "no model given")
