"""profile: sweeps, schema, OOM handling, partial results, compare, bad input."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from attncli.profile import spec, sweep as prof
from attncli.profile.spec import SweepSpec, doubling, load_profile, parse_seq_lens
from attncli.profile.sweep import run_sweep
from helpers import run

ROW_KEYS = {"mode", "seq_len", "batch", "cache", "attn", "latency_ms", "tokens_per_s", "peak_memory_bytes", "status"}


def test_sweep_covers_every_series(loaded):
    lm, _ = loaded("llama")
    spec = SweepSpec(seq_lens=[4, 8, 16], attns=("eager", "sdpa"), repeats=2, warmup=0)
    rows = list(run_sweep(lm.model, spec))
    keys = {(r.mode, r.cache, r.attn) for r in rows}
    assert keys == {("prefill", None, "eager"), ("prefill", None, "sdpa"), ("decode", True, "eager"),
                    ("decode", True, "sdpa"), ("decode", False, "eager"), ("decode", False, "sdpa")}
    assert all(r.status == "ok" and r.latency_ms > 0 and len(r.timings_ms) == 2 for r in rows)
    assert {r.kernel for r in rows if r.attn == "eager"} == {"eager"}
    assert {r.kernel for r in rows if r.attn == "sdpa"} == {"sdpa/flash"}  # torch's CPU choice
    step = next(r for r in rows if r.mode == "decode" and r.cache and r.seq_len == 16)
    assert step.tokens_per_s == pytest.approx(1000 / step.latency_ms)
    assert step.kv_cache_bytes == 16 * 2 * 2 * 2 * 8 * 4  # T x layers x K/V x Hkv x D x fp32
    eager = next(r for r in rows if r.mode == "prefill" and r.attn == "eager" and r.seq_len == 16)
    assert eager.score_bytes == 4 * 16 * 16 * 4 and eager.attention_flops > 0


def test_cached_step_really_runs_at_depth(loaded, monkeypatch):
    """The timed decode step is a (B, 1) forward over a cache holding T-1 tokens."""
    lm, _ = loaded("llama")
    seen = []
    real = lm.model.forward

    def spy(ids, **kw):
        if kw.get("cache") is not None:
            seen.append((ids.shape[1], kw["cache"].length))
        return real(ids, **kw)

    monkeypatch.setattr(lm.model, "forward", spy)
    list(run_sweep(lm.model, SweepSpec(seq_lens=[10], modes=("decode",), caches=(True,), repeats=2, warmup=1)))
    assert seen[0] == (9, 0) and set(seen[1:]) == {(1, 9)}


def test_oom_row_is_recorded_and_the_series_stops(loaded, monkeypatch):
    lm, _ = loaded("llama")
    real = prof._step_fn

    def flaky(model, mode, cache, attn, batch, t, *rest):
        if mode == "prefill" and t >= 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB (injected)")
        return real(model, mode, cache, attn, batch, t, *rest)

    monkeypatch.setattr(prof, "_step_fn", flaky)
    rows = list(run_sweep(lm.model, SweepSpec(seq_lens=[8, 16, 32], repeats=1, warmup=0)))
    prefill = [(r.seq_len, r.status) for r in rows if r.mode == "prefill"]
    assert prefill == [(8, "ok"), (16, "oom")]  # 32 never tried: the series stopped growing
    assert [r.seq_len for r in rows if r.mode == "decode" and r.cache] == [8, 16, 32]
    assert "injected" in next(r.note for r in rows if r.status == "oom")


def test_rows_predicted_not_to_fit_in_ram_are_not_run(loaded, monkeypatch):
    lm, _ = loaded("llama")
    monkeypatch.setattr(prof, "_predicted_bytes", lambda *a: 10**15)
    rows = list(run_sweep(lm.model, SweepSpec(seq_lens=[8, 16], modes=("prefill",), repeats=1, warmup=0)))
    assert [(r.status, r.latency_ms) for r in rows] == [("oom", None)] and "not run" in rows[0].note


def test_cli_json_csv_schema_and_fits(capfd, saved, tmp_path):
    folder, _ = saved("mistral-window")
    out, csv_path = tmp_path / "r.json", tmp_path / "r.csv"
    code, stdout, err = run(capfd, "profile", "-m", str(folder), "--seq-lens", "8,16,32", "--repeats", "1",
                            "--warmup", "0", "--attn", "eager,sdpa", "--out", str(out), "--csv", str(csv_path))
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert set(doc) >= {"env", "model", "rows", "fits"}
    assert {"torch", "device", "device_name", "dtype", "threads", "commit"} <= set(doc["env"])
    assert doc["model"]["architecture"] == "mistral" and doc["model"]["sliding_window"] == 4
    assert len(doc["rows"]) == 3 * (1 + 2) * 2 and all(ROW_KEYS <= set(r) for r in doc["rows"])
    assert {r["status"] for r in doc["rows"]} == {"ok"}
    assert len(doc["fits"]) == 6 * 2
    # every latency is positive; a tiny model's step may touch no new memory (exact 0: no point)
    assert all(f["points"] == 3 if f["metric"] == "latency_ms" else f["points"] <= 3 for f in doc["fits"])
    with open(csv_path) as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(doc["rows"]) and ROW_KEYS <= set(table[0])
    assert "prefill" in stdout and "growth with T" in stdout and "latency vs T" in stdout


def test_interrupted_sweep_keeps_finished_rows(capfd, saved, tmp_path, monkeypatch):
    folder, _ = saved("llama")
    real = prof.measure
    calls = []

    def measure(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(prof, "measure", measure)
    out = tmp_path / "partial.json"
    code, _, err = run(capfd, "profile", "-m", str(folder), "--seq-lens", "4,8,16", "--repeats", "1",
                       "--warmup", "0", "--out", str(out))
    assert code == 130 and "interrupted" in err
    assert [r["seq_len"] for r in json.loads(out.read_text())["rows"]] == [4, 8]
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written file left behind


def test_compare_prints_ratios(capfd, saved, tmp_path):
    folder, _ = saved("llama")
    old = tmp_path / "old.json"
    args = ["profile", "-m", str(folder), "--seq-lens", "4,8", "--mode", "prefill", "--repeats", "1", "--warmup", "0"]
    assert run(capfd, *args, "--out", str(old))[0] == 0
    code, out, _ = run(capfd, *args, "--compare", str(old))
    assert code == 0 and "compared with old.json" in out and "ratio" in out


def test_profiles_ship_and_load(capfd, saved, tmp_path):
    assert {"quadratic", "cache", "backends"} <= set(spec.profile_names())
    assert load_profile("cache")["cache"] == "both"
    custom = tmp_path / "mine.toml"
    custom.write_text('mode = "prefill"\nseq_lens = [4, 8]\nrepeats = 1\nwarmup = 0\n')
    folder, _ = saved("llama")
    code, out, _ = run(capfd, "profile", "-m", str(folder), "--profile", str(custom), "--json")
    doc = json.loads(out)
    assert code == 0 and [r["seq_len"] for r in doc["rows"]] == [4, 8] and doc["rows"][0]["mode"] == "prefill"
    code, out, _ = run(capfd, "profile", "-m", str(folder), "--profile", "quadratic", "--max-seq-len", "16",
                       "--repeats", "1", "--json")
    doc = json.loads(out)  # flags override the file; the file's mode/cache hold
    assert code == 0 and {(r["mode"], r["cache"]) for r in doc["rows"]} == {("prefill", None), ("decode", False)}
    assert [r["seq_len"] for r in doc["rows"] if r["mode"] == "prefill"] == [16]


def test_seq_len_helpers():
    assert parse_seq_lens("512,128, 256") == [128, 256, 512]
    assert doubling(1000) == [128, 256, 512, 1000] and doubling(64) == [64]


@pytest.mark.parametrize("args, words", [
    (["--seq-lens", "128,abc"], "comma-separated integers"),
    (["--seq-lens", "0,8"], "positive integers"),
    (["--seq-lens", "65"], "past the model's context of 64"),
    (["--mode", "train"], "--mode: unknown value train"),
    (["--attn", "flash"], "--attn: unknown value flash"),
    (["--cache", "maybe"], "--cache: unknown value"),
    (["--out", "/nonexistent-dir/r.json"], "folder /nonexistent-dir does not exist"),
    (["--out", "r.txt"], "unknown extension '.txt'"),
    (["--profile", "nosuch"], "unknown profile 'nosuch'"),
    (["--compare", "/nonexistent.json"], "no such file"),
    (["--max-seq-len", "lots"], "integer or 'context'"),
])
def test_bad_input_is_one_line_exit_2(capfd, saved, args, words):
    folder, _ = saved("llama")
    code, out, err = run(capfd, "profile", "-m", str(folder), *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err


@pytest.mark.parametrize("args, words", [
    (["--preset", "gpt5"], "unknown preset 'gpt5'"),
    (["--preset", "gpt2"], "add --random-weights"),
])
def test_bad_presets(capfd, args, words):
    code, _, err = run(capfd, "profile", *args)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_unwritable_out(capfd, saved, tmp_path, monkeypatch):
    """As root every folder is writable, so the refusal is exercised through os.access."""
    import attncli.atomic as atomic

    folder, _ = saved("llama")
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: False)
    code, _, err = run(capfd, "profile", "-m", str(folder), "--out", str(tmp_path / "r.json"))
    assert code == 2 and "is not writable" in err and len(err.strip().splitlines()) == 1


def test_preset_with_random_weights_runs(capfd):
    code, out, err = run(capfd, "profile", "--preset", "smollm2-135m", "--random-weights", "--seq-lens", "8",
                         "--mode", "decode", "--cache", "on", "--repeats", "1", "--warmup", "0", "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert doc["model"]["name"] == "smollm2-135m" and doc["model"]["parameters"] == 134_515_008
    assert doc["model"]["random_weights"] and doc["rows"][0]["status"] == "ok"


def test_info_preset(capfd):
    code, out, _ = run(capfd, "info", "--preset", "mistral-7b", "--json", "--context", "32768")
    info = json.loads(out)
    assert code == 0 and info["parameters"] == 7_241_732_096 and info["sliding_window"] == 4096
    assert info["kv_cache_bytes_per_token"] == 2 * 32 * 8 * 128 * 4  # float32 on this CPU


def test_plot_without_matplotlib_fails_before_the_sweep(capfd, saved, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    folder, _ = saved("llama")
    code, out, err = run(capfd, "profile", "-m", str(folder), "--plot", str(tmp_path / "p.png"))
    assert code == 2 and "pip install 'attncli[plot]'" in err and out == ""


def test_plot_writes_a_png(capfd, saved, tmp_path):
    pytest.importorskip("matplotlib")
    folder, _ = saved("llama")
    png = tmp_path / "p.png"
    code, _, err = run(capfd, "profile", "-m", str(folder), "--seq-lens", "4,8", "--repeats", "1", "--warmup", "0",
                       "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_window_knob_makes_every_layer_slide(capfd, tmp_path):
    from attncli.profile.spec import load_profile

    out = tmp_path / "w.json"
    code, _, err = run(capfd, "profile", "--preset", "gpt2", "--random-weights", "--window", "64", "--mode", "prefill",
                       "--seq-lens", "128", "--repeats", "1", "--warmup", "0", "--out", out)
    # GPT-2's learned positions: windowed all the same (the knob changes masks, not weights)
    assert code == 0, err
    import json

    doc = json.loads(out.read_text())
    assert doc["model"]["sliding_window"] == 64 and "every layer window 64" in doc["model"]["name"]
    assert doc["rows"][0]["block_skipped_fraction"] is None  # an sdpa row
    assert load_profile("windows")["attn"] == "sdpa,flex" and load_profile("windows")["window"] == 128


@pytest.mark.slow
def test_flex_rows_carry_block_skipping_and_compile_time(capfd, tmp_path):
    import json

    out = tmp_path / "f.json"
    code, _, err = run(capfd, "profile", "--window", "128", "--attn", "sdpa,flex", "--mode", "prefill",
                       "--seq-lens", "256,512", "--repeats", "1", "--warmup", "0", "--out", out)
    assert code == 0, err
    rows = {(r["attn"], r["seq_len"]): r for r in json.loads(out.read_text())["rows"]}
    assert rows[("flex", 512)]["block_skipped_fraction"] == pytest.approx(1 - 7 / 16)  # 16 blocks, 7 computed
    assert rows[("flex", 256)]["compile_s"] > 0 and rows[("sdpa", 256)]["compile_s"] is None


def test_compiled_rows_share_one_graph_per_bucket_and_match_eager(loaded):
    """profile --compile: the cache is sized in COMPILE_BUCKET steps, so every T in a bucket
    reuses one graph (not a compile per T, which past dynamo's limit ran eager unnoticed),
    and the compiled step computes what the eager one does."""
    from torch._dynamo.utils import counters

    lm, _ = loaded("qwen3")
    with torch.inference_mode():
        for t in (5, 12):
            want = prof._step_fn(lm.model, "decode", True, "sdpa", 1, t, lm.model.device)().logits[:, -1]
            got = prof._step_fn(lm.model, "decode", True, "sdpa", 1, t, lm.model.device, True)()
            torch.testing.assert_close(got, want)
    before = counters["stats"]["unique_graphs"]
    rows = list(run_sweep(lm.model, SweepSpec(seq_lens=[3, 9, 17, 33], modes=("decode",), caches=(True,),
                                              repeats=2, warmup=0, compile=True)))
    assert all(r.status == "ok" and r.latency_ms > 0 and r.kernel == "inductor" for r in rows)
    assert rows[0].peak_memory_bytes < 4 * 2**20  # the compile's resident code is not the row's memory
    assert counters["stats"]["unique_graphs"] == before  # the bucket's graph, compiled above
