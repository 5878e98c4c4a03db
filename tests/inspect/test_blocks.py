"""inspect-mask's block view: per layer kind, the blocks a kernel of --block-size computes in
full, partly or skips, checked against the mask itself; and chunked masks alone."""

from __future__ import annotations

from helpers import LONG, assert_one_line_error, run, run_json


def _count(mask, size):
    t = len(mask)
    states = {"full": 0, "partial": 0, "empty": 0}
    for i in range(0, t, size):
        for j in range(0, t, size):
            cells = [mask[a][b] for a in range(i, min(i + size, t)) for b in range(j, min(j + size, t))]
            states["full" if all(cells) else "partial" if any(cells) else "empty"] += 1
    return states


def test_masks_alone_json_carries_block_counts(capfd):
    doc = run_json(capfd, "inspect-mask", "--seq-len", "40", "--kind", "sliding", "--window", "6", "--block-size", "8")
    blocks = doc["blocks"]["sliding"]
    assert blocks["size"] == 8 and {k: blocks[k] for k in ("full", "partial", "empty")} == _count(doc["mask"], 8)
    skipped = sum(1 for i in range(40) for j in range(40) if (j // 8) * 8 + 7 < i - 5 or j // 8 > i // 8) / 1600
    assert 0 < blocks["skipped_fraction"] <= skipped + 1e-9


def test_a_model_report_shows_blocks_per_layer_kind(capfd, model_dir):
    doc = run_json(capfd, "inspect-mask", "-m", model_dir("qwen2-sliding-layers"), LONG, "--block-size", "2")
    assert set(doc["blocks"]) == {"full", "sliding"}
    assert doc["blocks"]["sliding"]["skipped_fraction"] > doc["blocks"]["full"]["skipped_fraction"]
    code, out, _ = run(capfd, "inspect-mask", "-m", model_dir("qwen2-sliding-layers"), LONG, "--block-size", "2")
    assert code == 0 and "what a block kernel (--attn flex) computes" in out and "never computed" in out


def test_chunked_masks_alone(capfd):
    doc = run_json(capfd, "inspect-mask", "--seq-len", "10", "--kind", "chunked", "--chunk", "4")
    assert doc["chunk"] == 4
    assert [sum(row) for row in doc["mask"]] == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    code, out, _ = run(capfd, "inspect-mask", "--seq-len", "10", "--kind", "chunked", "--chunk", "4", "--pad", "2",
                       "--check")
    assert code == 0 and "chunk 4" in out


def test_chunk_usage_errors(capfd):
    assert_one_line_error(*run(capfd, "inspect-mask", "--seq-len", "8", "--kind", "chunked")[::2], 2, "--chunk C")
    assert_one_line_error(*run(capfd, "inspect-mask", "--seq-len", "8", "--chunk", "2")[::2], 2, "--kind chunked")
    assert_one_line_error(*run(capfd, "inspect-mask", "--seq-len", "8", "--block-size", "0")[::2], 2, "--block-size")
