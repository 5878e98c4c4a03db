"""inspect-mask --check (attncli.inspect.leakcheck): passing on every architecture on a padded
batch, failing on a model that leaks one future token and on an off-by-one window,
skipping (not passing) a window edge the prompt is too short to reach, and the dtype
audit's facts."""

from __future__ import annotations

import json

import pytest
import torch

from attncli.inspect import leakcheck, reports
from attncli.model.attention import masks as attention  # patched where defined
from helpers import LONG, SHORT, assert_one_line_error, run, run_json



@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral-window", "qwen2-sliding-layers", "qwen3", "olmo2",
                                  "gemma2", "gemma3", "pythia", "phi3", "smollm3"])
def test_check_passes_on_every_architecture(capfd, model_dir, name):
    docs = run_json(capfd, "inspect-mask", "-m", model_dir(name), LONG, SHORT, "--check")  # a padded batch
    results = {r["name"]: r["result"] for r in docs[0]["checks"]}
    assert set(results.values()) <= {"pass", "skipped"}, docs[0]["checks"]
    expected = {"mask", "structural", "behavioural (sdpa)", "behavioural (eager)", "dtype audit"}
    expected |= {"sliding edge"} if "window" in name or "sliding" in name else set()
    assert {k for k, v in results.items() if v == "pass"} >= expected


def test_check_fails_on_a_model_that_leaks_one_future_token(capfd, model_dir, monkeypatch):
    monkeypatch.setattr(attention, "causal", lambda: (lambda b, h, q, kv: kv <= q + 1))
    code, out, err = run(capfd, "inspect-mask", "-m", model_dir("llama"), LONG, "--check")
    assert_one_line_error(code, err, 1, "check(s) failed: mask, structural, behavioural (eager)")
    assert "2 passed, 3 failed" in out and "behavioural (eager)" in out
    doc = json.loads(run(capfd, "inspect-mask", "-m", model_dir("llama"), LONG, "--check", "--json")[1])
    checks = {r["name"]: r for r in doc["checks"]}
    assert checks["structural"]["result"] == checks["behavioural (eager)"]["result"] == checks["mask"]["result"] == "fail"
    assert "query 0 -> key 1 (future key, 1 ahead)" in checks["structural"]["detail"]
    assert checks["behavioural (sdpa)"]["result"] == "pass"  # sdpa's own is_causal was never broken
    # Masks alone judge the predicate against first principles too.
    code, out, err = run(capfd, "inspect-mask", "--seq-len", 6, "--check")
    assert code == 1 and "mask, structural" in err


def test_sliding_edge_is_skipped_not_passed_on_a_short_prompt(capfd, model_dir):
    doc = run_json(capfd, "inspect-mask", "-m", model_dir("mistral-window"), "the cat sat on", "--check")
    edge = next(r for r in doc["checks"] if r["name"] == "sliding edge")
    assert edge["result"] == "skipped" and "shorter than W+2 = 6" in edge["detail"]


def test_sliding_edge_catches_an_off_by_one_window(monkeypatch):
    # A window one wider than asked: distance W must be masked and is not.
    monkeypatch.setattr(attention, "sliding_window", lambda w: (lambda b, h, q, kv: kv > q - w - 1))
    rows = leakcheck.check_alone(reports.masks_alone(10, kind="sliding", window=4)).rows
    edge = next(r for r in rows if r["name"] == "sliding edge")
    assert edge["result"] == "fail" and "distance 4 is visible" in edge["detail"]


def test_dtype_audit_facts():
    rows = leakcheck.dtype_audit()
    by = {(r["dtype"], r["fill"], r["method"]): r for r in rows}
    for dtype in ("float16", "bfloat16"):
        ours = by[(dtype, "-inf", leakcheck.ATTNCLI_METHOD)]
        assert ours["verdict"] == "ok" and ours["masked_row"] == "zeros" and ours["partial_row"] == "0"
        assert by[(dtype, "-inf", "masked_fill")]["masked_row"] == "NaN"  # softmax of all -inf
        assert by[(dtype, "finfo.min", "masked_fill")]["verdict"] == "leak"  # uniform over padding
    assert by[("float16", "-1e9", "additive")]["masked_row"] == "NaN"  # -1e9 overflows to -inf
    assert leakcheck.audit_row(rows)["result"] == "pass"


def test_dtype_audit_runs_on_the_device_it_is_given(monkeypatch, loaded):
    """--check audits the kernels of the model's device, not the CPU's whatever --device."""
    seen = []
    real = leakcheck.dtype_audit
    monkeypatch.setattr(leakcheck, "dtype_audit", lambda *device: seen.append(device) or real(*device))
    rows = real(torch.device("cpu"))
    assert {r["note"].rsplit(", ", 1)[-1] for r in rows if r["method"] == "attncli sdpa"} == {"cpu"}
    lm, _ = loaded("llama")
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    valid = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]).bool()
    batch = leakcheck.Batch(ids, valid, [[None] * 5] * 2, None)
    result = leakcheck.check_model(lm, batch, backend="sdpa")
    assert seen == [(lm.device,)] and result.audit  # told the device, not left to its CPU default


def test_check_and_probes_never_keep_every_layers_scores(capfd, model_dir, monkeypatch):
    """--check and --scores/--weights pass the model a keep function, never probe=True
    (which would hold L x (B, H, T, S) scores: 48 GiB for a 1B model at T = 4,096)."""
    from attncli.model.transformer import Transformer

    seen = []
    real = Transformer.forward

    def spy(self, *a, probe=False, **kw):
        seen.append(probe)
        return real(self, *a, probe=probe, **kw)

    monkeypatch.setattr(Transformer, "forward", spy)
    folder = model_dir("mistral-window")
    for extra in (["--check"], ["--scores", "--weights", "--layer", "1"]):
        code, _, err = run(capfd, "inspect-mask", "-m", folder, LONG, *extra)
        assert code == 0, err
    assert seen and all(p is False or callable(p) for p in seen) and any(callable(p) for p in seen)
