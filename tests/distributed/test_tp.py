"""Tensor parallelism on the CPU (gloo, 2 processes): every family's greedy tokens and logits
under TP equal one process's, each rank holds about half the weights, and --tp behaves as
a command-line option should (one line per error, rank 0 alone printing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attncli.generate.loop import generate
from hf_factory import VARIANTS
from helpers import run

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROMPTS = [[5, 17, 42, 9, 77, 31], [7, 8]]
NEW = 6


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def tp_results(saved, tmp_path_factory):
    """One torchrun launch over every variant (the process start is the expensive part)."""
    folders = [str(saved(name)[0]) for name in VARIANTS]
    out = tmp_path_factory.mktemp("tp") / "results.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(HERE / "tp_worker.py"), str(out), *folders]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    by_folder = json.loads(out.read_text())
    return {name: by_folder[Path(saved(name)[0]).name] for name in VARIANTS}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_tp2_tokens_and_logits_equal_one_process(loaded, tp_results, name):
    lm, _ = loaded(name)
    got = tp_results[name]
    for backend in ("sdpa", "eager"):
        for cache in (True, False):
            gen = generate(lm.model, PROMPTS, max_new_tokens=NEW, use_cache=cache, backend=backend)
            list(gen)
            key = f"{backend}/{'cache' if cache else 'no-cache'}"
            assert got["tokens"][key] == [r.tokens for r in gen.rows], key
    ids = torch.tensor([[5, 17, 42, 9, 77, 31], [0, 0, 0, 0, 7, 8]])
    mask = (torch.arange(6) >= torch.tensor([[0], [4]])).long()
    with torch.inference_mode():
        want = lm.model(ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(torch.tensor(got["logits"])[real], want[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["llama", "gpt2", "qwen2", "phi3"])
def test_each_rank_holds_about_half_the_weights(loaded, tp_results, name):
    """Measured on rank 0: its parameters' storage against the whole model's (norms and
    learned positions are replicated, so a little over half)."""
    lm, _ = loaded(name)
    whole = sum({p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in lm.model.parameters()}.values())
    share = tp_results[name]["weight_bytes"] / whole
    assert 0.45 <= share <= 0.6, share


def test_cli_tp2_generates_what_one_process_does(capfd, model_dir):
    folder = model_dir("llama")
    one = run(capfd, "generate", "-m", folder, "the cat sat", "a dog", "-n", "6", "--json")
    env_before = dict(os.environ)
    try:
        os.environ["OMP_NUM_THREADS"] = "1"
        two = run(capfd, "generate", "-m", folder, "the cat sat", "a dog", "-n", "6", "--json", "--tp", "2")
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    assert one[0] == two[0] == 0, two[2]
    tokens = lambda out: [json.loads(line)["tokens"] for line in out.splitlines()]  # noqa: E731
    assert tokens(two[1]) == tokens(one[1])  # rank 0 alone printed: two rows, not four
    assert "tp 2 gloo" in two[2] and two[2].count("prompt 5 tok") == 1


def test_tp_errors_are_one_line_before_loading(capfd, model_dir):
    folder = model_dir("llama")  # 4 heads, 2 KV heads
    code, out, err = run(capfd, "info", "-m", folder, "--tp", "3")
    assert code == 2 and "4 attention heads do not split into 3" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capfd, "generate", "-m", folder, "the cat", "--tp", str((os.cpu_count() or 1) + 1))
    assert code == 2 and "more ranks than" in err and len(err.strip().splitlines()) == 1


def test_info_tp_says_what_each_rank_holds(capfd, model_dir):
    folder = model_dir("llama")
    code, out, _ = run(capfd, "info", "-m", folder, "--tp", "2", "--json", "--context", "64")
    doc = json.loads(out)
    assert code == 0 and doc["tp"] == 2 and (doc["rank_heads"], doc["rank_kv_heads"]) == (2, 1)
    assert doc["rank_kv_cache_bytes"] * 2 == doc["kv_cache_bytes"]
    assert doc["weight_bytes"] / 2 < doc["rank_weight_bytes"] < 0.6 * doc["weight_bytes"]
    assert doc["rank_memory_bytes"] == doc["rank_weight_bytes"] + doc["rank_kv_cache_bytes"]


def test_a_failed_rank_is_one_line_and_its_exit_code(tmp_path):
    """Rank 0 stopped by the launcher (it printed nothing): the failing rank's line is shown."""
    from types import SimpleNamespace

    from attncli.distributed.launch import _one_line

    (tmp_path / "rank-1-2.txt").write_text("rank 1: something only rank 1 saw\n")
    err = SimpleNamespace(failures={1: SimpleNamespace(local_rank=1, exitcode=2)})
    assert _one_line(err, tmp_path) == 2
    (tmp_path / "rank-0-1.txt").write_text("what rank 0 printed\n")
    assert _one_line(err, tmp_path) == 1  # rank 0 said it itself: nothing more is printed


def _with_one_thread(fn):
    before = dict(os.environ)
    try:
        os.environ["OMP_NUM_THREADS"] = "1"
        return fn()
    finally:
        os.environ.clear()
        os.environ.update(before)


def test_inspect_weights_under_tp_gather_the_head_shown(capfd, model_dir):
    """Head 3 lives on rank 1 (2 heads a rank): the probe gathers every head, rank 0 shows it."""
    folder = model_dir("llama")
    args = ["inspect-mask", "-m", folder, "the cat sat on the mat", "--weights", "--scores", "--layer", "1",
            "--head", "3", "--json"]
    one = run(capfd, *args)
    two = _with_one_thread(lambda: run(capfd, *args, "--tp", "2"))
    assert one[0] == two[0] == 0, two[2]
    a, b = json.loads(one[1]), json.loads(two[1])
    torch.testing.assert_close(torch.tensor(b["weights"]), torch.tensor(a["weights"]))
    check = _with_one_thread(lambda: run(capfd, "inspect-mask", "-m", folder, "the cat sat on the mat", "a dog",
                                         "--check", "--tp", "2"))
    assert check[0] == 0, check[2]


def test_profile_rows_carry_tp(capfd, model_dir, tmp_path):
    folder = model_dir("llama")
    out = tmp_path / "p.json"
    code, _, err = _with_one_thread(lambda: run(capfd, "profile", "-m", folder, "--seq-lens", "8,16", "--repeats", "1",
                                                "--out", out, "--tp", "2"))
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["env"]["tp"] == 2 and doc["env"]["tp_backend"] == "gloo"
    assert {r["tp"] for r in doc["rows"]} == {2} and all(r["status"] == "ok" for r in doc["rows"])


def test_compiled_decode_under_tp_gives_the_same_tokens(capfd, model_dir):
    """--compile --tp 2: the collectives inside the compiled step (inductor's C++ wrapper
    cannot call them, so it is off under TP)."""
    folder = model_dir("qwen3")
    one = run(capfd, "generate", "-m", folder, "the cat sat", "a dog", "-n", "5", "--json")
    two = _with_one_thread(lambda: run(capfd, "generate", "-m", folder, "the cat sat", "a dog", "-n", "5", "--json",
                                       "--tp", "2", "--compile"))
    assert one[0] == two[0] == 0, two[2]
    tokens = lambda out: [json.loads(line)["tokens"] for line in out.splitlines()]  # noqa: E731
    assert tokens(two[1]) == tokens(one[1]) and "decode inductor" in two[2]


def test_sampling_without_a_seed_draws_the_same_tokens_on_every_rank(capfd, model_dir):
    """Each rank would pick its own random seed and feed the others' all-reduces different
    tokens: rank 0's seed is used by all, and that seed alone reproduces the run."""
    import re

    folder = model_dir("llama")
    code, out, err = _with_one_thread(lambda: run(capfd, "generate", "-m", folder, "the cat sat", "-n", "8", "-t",
                                                  "1.5", "--json", "--tp", "2"))
    assert code == 0, err
    seed = re.search(r"seed (\d+)", err).group(1)
    alone = run(capfd, "generate", "-m", folder, "the cat sat", "-n", "8", "-t", "1.5", "--json", "--seed", seed)
    assert json.loads(out)["tokens"] == json.loads(alone[1])["tokens"]
