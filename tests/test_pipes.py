"""Output that survives pipes and narrow terminals, and flags that are never silently
ignored (the defects a new user found): each defect, its test."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from attncli import console
from helpers import assert_one_line_error, run

NUMBER_CUT = re.compile(r"[\d.,]…")  # a number with its end cut off


def _profile_doc(capfd, saved, tmp_path, name="old.json", model="llama", *extra):
    folder, _ = saved(model)
    out = tmp_path / name
    code, _, err = run(capfd, "profile", "-m", folder, "--seq-lens", "4,8", "--mode", "prefill", "--repeats", "1",
                       "--warmup", "0", "--out", out, *extra)
    assert code == 0, err
    return out


@pytest.mark.parametrize("width", [80, 200])
def test_profile_tables_never_cut_a_number(saved, tmp_path, capfd, width):
    from attncli.profile import tables

    doc = json.loads(_profile_doc(capfd, saved, tmp_path).read_text())
    buf = io.StringIO()
    term = Console(file=buf, width=width, force_terminal=False)
    for table in tables.mode_tables(doc["rows"], width=width) + [tables.fit_table(doc["fits"], width=width)]:
        term.print(table)
    text = buf.getvalue()
    assert not NUMBER_CUT.search(text), text
    assert all(len(line) <= width for line in text.splitlines())
    assert ("hidden at this width" in text) == (width == 80)


def test_piped_output_prints_at_the_width_it_needs(capfd, saved, tmp_path):
    folder, _ = saved("llama")
    code, out, _ = run(capfd, "profile", "-m", folder, "--seq-lens", "4", "--mode", "prefill", "--repeats", "1",
                       "--warmup", "0")
    assert code == 0 and "…" not in out and "GFLOP/s" in out  # every column, nothing cut
    code, out, _ = run(capfd, "info", "--preset", "help")
    assert code == 0 and "…" not in out and "openai-community/gpt2" in out and "8,030,261,248" in out
    assert console.out.width > 1000  # a pipe: no terminal width to keep to


def test_compare_says_when_setups_differ_and_when_nothing_matches(capfd, saved, tmp_path):
    old = _profile_doc(capfd, saved, tmp_path, "old.json", "gpt2")
    folder, _ = saved("llama")
    code, out, err = run(capfd, "profile", "-m", folder, "--seq-lens", "4,8", "--mode", "prefill", "--repeats", "1",
                         "--warmup", "0", "--compare", old)
    assert code == 0
    assert "architecture differs: gpt2 then, llama now" in err and "model differs" in err
    code, out, err = run(capfd, "profile", "-m", folder, "--seq-lens", "16", "--mode", "prefill", "--repeats", "1",
                         "--warmup", "0", "--compare", old)
    assert "no row matches" in err and "compared with" not in out


def test_fail_above_gates_a_regression(capfd, saved, tmp_path):
    old = _profile_doc(capfd, saved, tmp_path)
    doc = json.loads(old.read_text())
    for r in doc["rows"]:
        r["latency_ms"] /= 100  # the old run was 100x faster
    old.write_text(json.dumps(doc))
    folder, _ = saved("llama")
    code, _, err = run(capfd, "profile", "-m", folder, "--seq-lens", "4,8", "--mode", "prefill", "--repeats", "1",
                       "--warmup", "0", "--compare", old, "--fail-above", "1.5")
    assert_one_line_error(code, err.splitlines()[-1] + "\n", 1, "--fail-above 1.5: 2 row(s) slower than 1.5x")
    assert_one_line_error(*run(capfd, "profile", "--fail-above", "1.1")[::2], 2, "needs --compare")


def test_info_preset_help_lists_the_presets(capfd):
    code, out, _ = run(capfd, "info", "--preset", "help")
    assert code == 0 and "gemma-2-2b" in out and "pythia-160m" in out


def test_ignored_flags_are_refused_or_said(capfd, saved, monkeypatch):
    folder, _ = saved("llama")
    assert_one_line_error(*run(capfd, "info", "-m", folder, "--preset", "gpt2")[::2], 2, "not both")
    code, out, err = run(capfd, "info", "--preset", "gpt2", "--context", "4096")
    assert code == 0 and "warning: --context 4,096 is past the model's context of 1,024" in err
    assert_one_line_error(*run(capfd, "profile", "-m", folder, "--mode", "prefill", "--cache", "on")[::2], 2,
                          "--mode prefill has none")
    assert_one_line_error(*run(capfd, "profile", "-m", folder, "--seq-lens", "")[::2], 2, "--seq-lens is empty")


def test_sampling_flags_without_a_temperature_are_refused(capfd, model_dir):
    m = model_dir("llama")
    for flags, words in [(["--top-k", "5"], "--top-k: only sampling uses it"),
                         (["--top-p", "0.9", "--seed", "3"], "--top-p, --seed: only sampling uses them"),
                         (["-t", "inf"], "must be >= 0 and finite"),
                         (["-t", "0.5", "--seed", str(2**70)], "--seed must be an integer in 0 .. 2**64 - 1")]:
        assert_one_line_error(*run(capfd, "generate", "-m", m, "the cat", *flags)[::2], 2, words)


def test_invalid_utf8_prompt_is_one_line(capfd, model_dir):
    bad = b"the cat \xff".decode("utf-8", "surrogateescape")  # what a shell hands over
    assert_one_line_error(*run(capfd, "generate", "-m", model_dir("llama"), bad)[::2], 2, "not valid UTF-8")


def test_empty_stdin_and_prompts_files(capfd, model_dir, tmp_path, monkeypatch):
    from attncli.generate.text import read_prompts

    m = model_dir("llama")
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert_one_line_error(*run(capfd, "generate", "-m", m)[::2], 2, "stdin was empty")
    lines = tmp_path / "p.txt"
    lines.write_text("the cat\n\na dog\n")
    assert read_prompts(str(lines)) == ["the cat", "a dog"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "the cat"}\n{"prompt": "a dog", "id": 2}\n')
    assert read_prompts(str(jsonl)) == ["the cat", "a dog"]
    assert read_prompts("-", stdin=io.StringIO("x\ny\n")) == ["x", "y"]
    code, out, err = run(capfd, "generate", "-m", m, "--prompts-file", jsonl, "-n", "2", "--json")
    assert code == 0 and [json.loads(line)["prompt"] for line in out.splitlines()] == ["the cat", "a dog"]
    jsonl.write_text('{"text": "no prompt"}\n')
    assert_one_line_error(*run(capfd, "generate", "-m", m, "--prompts-file", jsonl)[::2], 2, 'no string "prompt"')


def test_a_model_too_big_for_memory_is_refused_before_building(capfd, monkeypatch):
    import psutil

    from attncli.profile import sweep

    class Small:
        available = 8 * 2**30

    monkeypatch.setattr(sweep.psutil, "virtual_memory", lambda: Small)
    code, _, err = run(capfd, "profile", "--preset", "llama-3-8b", "--random-weights", "--device", "cpu")
    assert_one_line_error(code, err, 2, "--preset llama-3-8b in float32 needs ~")
    assert psutil  # (the real module is untouched elsewhere)


def test_interrupted_profile_renders_its_rows_and_keeps_the_file(capfd, saved, tmp_path, monkeypatch):
    from attncli.profile import run as profile_run

    real = profile_run.run_sweep

    def cut(model, spec):
        for i, row in enumerate(real(model, spec)):
            if i == 1:
                raise KeyboardInterrupt
            yield row

    monkeypatch.setattr(profile_run, "run_sweep", cut)
    folder, _ = saved("llama")
    out = tmp_path / "part.json"
    code, stdout, err = run(capfd, "profile", "-m", folder, "--seq-lens", "4,8", "--mode", "prefill",
                            "--repeats", "1", "--warmup", "0", "--out", out)
    assert code == 130 and "prefill: one forward" in stdout
    assert f"kept {out} (1 finished rows)" in err
    assert len(json.loads(out.read_text())["rows"]) == 1


def test_interrupted_json_rows_finish_as_interrupted():
    from attncli.generate.loop import GenerationStats, Row
    from attncli.generate.text import TextModel

    class Tok:
        def decode(self, ids):
            return ""

    tm = TextModel.__new__(TextModel)
    tm.tokenizer = Tok()
    row = Row([1, 2])
    stats = GenerationStats.__new__(GenerationStats)
    stats.ttft_s = stats.peak_memory_bytes = stats.kv_cache_bytes = None
    stats.row_tokens_per_s = lambda r: None
    assert tm.record("p", row, stats, interrupted=True)["finish_reason"] == "interrupted"
    assert tm.record("p", row, stats)["finish_reason"] is None


def test_dump_says_what_it_wrote(capfd, tmp_path):
    target = tmp_path / "m.json"
    code, _, err = run(capfd, "inspect-mask", "--seq-len", "4", "--dump", target)
    assert code == 0 and f"wrote {target}" in err and target.is_file()


def test_threads_flag_sets_and_reports_the_thread_count(capfd, model_dir, saved):
    import torch

    old = torch.get_num_threads()
    try:
        code, _, err = run(capfd, "generate", "-m", model_dir("llama"), "the cat", "-n", "2", "--threads", "1")
        assert code == 0 and "threads 1" in err
        folder, _ = saved("llama")
        code, out, _ = run(capfd, "profile", "-m", folder, "--seq-lens", "4", "--mode", "prefill", "--repeats", "1",
                           "--threads", "1", "--json")
        assert json.loads(out)["env"]["threads"] == 1
    finally:
        torch.set_num_threads(old)


def test_breakdown_times_attention_apart_and_fits_each(capfd, saved, tmp_path):
    folder, _ = saved("llama")
    code, out, _ = run(capfd, "profile", "-m", folder, "--seq-lens", "8,16,32", "--mode", "prefill", "--repeats", "2",
                       "--warmup", "0", "--breakdown", "--json")
    doc = json.loads(out)
    for r in doc["rows"]:
        assert 0 < r["attn_ms"] < r["latency_ms"]
        assert r["attn_ms"] + r["other_ms"] == pytest.approx(r["latency_ms"], rel=0.5)
    assert {"attn_ms", "other_ms"} <= {f["metric"] for f in doc["fits"]}


def test_format_md_csv_json_for_profile_info_and_check(capfd, saved, model_dir):
    import csv as csvmod

    folder, _ = saved("llama")
    base = ["profile", "-m", folder, "--seq-lens", "4,8", "--mode", "prefill", "--repeats", "1", "--warmup", "0"]
    code, out, _ = run(capfd, *base, "--format", "csv")
    rows = list(csvmod.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 2 and "llama" in rows[0]["model_name"] and rows[0]["torch"]
    assert {"dtype", "device", "commit", "latency_ms", "seq_len"} <= set(rows[0])
    code, out, _ = run(capfd, *base, "--format", "md")
    assert code == 0 and "| series | T | latency ms |" in out and "**growth with T**" in out
    code, out, _ = run(capfd, "info", "--preset", "gpt2", "--format", "md")
    assert code == 0 and "| architecture | gpt2 |" in out
    code, out, _ = run(capfd, "info", "--preset", "gpt2", "--format", "csv")
    info = next(csvmod.DictReader(io.StringIO(out)))
    assert info["parameters"] == "124439808" and info["architecture"] == "gpt2"
    code, out, _ = run(capfd, "inspect-mask", "-m", model_dir("llama"), "the cat sat", "--check", "--format", "md")
    assert code == 0 and "| mask | applied mask == expected" in out
    code, out, _ = run(capfd, "inspect-mask", "-m", model_dir("llama"), "the cat", "--weights", "--layer", "1",
                       "--format", "csv")
    cells = list(csvmod.DictReader(io.StringIO(out)))
    assert cells[0]["layer"] == "1" and cells[0]["head"] == "0" and "weight" in cells[0]
    assert_one_line_error(*run(capfd, "info", "--preset", "gpt2", "--json", "--format", "md")[::2], 2, "two formats")
    assert_one_line_error(*run(capfd, "inspect-mask", "--seq-len", "4", "--format", "md")[::2], 2, "add --check")
