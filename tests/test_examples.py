"""The scripts in examples/ still run end to end (benchmarks on toy shapes; timings not checked)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("shape", ["tiny-gpt2", "tiny-llama"])
def test_bench_vs_transformers_runs_and_agrees(tmp_path, shape):
    bench = load_example("bench_vs_transformers")
    out = tmp_path / "bench.json"
    results = bench.main(["--shape", shape, "--repeats", "2", "--new", "6", "--prompt-len", "5",
                          "--prefill", "16", "--prefill-repeats", "1", "--also-layout", "out_in",
                          "--bandwidth-gib", "0.01", "--out", str(out)])
    assert json.loads(out.read_text()) == results
    assert not list(tmp_path.glob("*.tmp"))
    assert [r["mode"] for r in results["decode"]] == ["cache", "nocache"]
    for row in results["decode"]:
        # greedy tokens equal transformers' for every attncli runner
        assert row["identical_greedy_tokens"] and set(row["identical_by_runner"]) == {"attncli", "attncli[out_in]"}
        assert row["attncli_tokens_per_s"] > 0 and row["transformers_tokens_per_s"] > 0
        assert len(row["repeats"]["attncli"]) == 2
    assert len(results["bandwidth_samples_gbs"]) == 1 + 2 * 2  # before, then after each repeat of each mode
    assert results["floor_tokens_per_s"] > 0
    assert [r["seq_len"] for r in results["prefill"]] == [16]
    assert results["env"]["commit"] is None or len(results["env"]["commit"]) >= 7


def test_bench_layouts_prints_every_shape(capsys):
    load_example("bench_layouts").main(["--preset", "gpt2", "--repeats", "1", "--mb", "1"])
    out = capsys.readouterr().out
    for shape in ["(50257, 768)", "(3072, 768)", "(768, 3072)", "(2304, 768)", "(768, 768)"]:
        assert shape in out
    assert "auto picks" in out.splitlines()[1]


def test_bench_products_times_every_path(two_threads):
    res = load_example("bench_products").main(["--preset", "gpt2", "--rows", "1,4", "--repeats", "1"])
    assert set(res) == {1, 4} and all(v > 0 for r in res.values() for v in r.values())
    assert {"mkl", "split"} <= set(res[1])


def test_python_api_example_runs_on_the_embedded_model(capsys):
    load_example("python_api").main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("llama, 1,869,504 parameters on ")
    assert len(lines) == 2 + 5 and all(float(line.split()[0]) > 0 for line in lines[2:])


def test_bench_vs_llamacpp_runs_without_llamacpp(tmp_path, capsys):
    """CI has no llama.cpp: the bench says so and times attncli and transformers."""
    bench = load_example("bench_vs_llamacpp")
    out = tmp_path / "bench.json"
    results = bench.main(["--shape", "tiny-llama", "--repeats", "2", "--tg", "6", "--depth", "5", "--pp", "16",
                          "--llama-bench", str(tmp_path / "missing"), "--bandwidth-gib", "0.01", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "llama-bench not found" in printed
    assert json.loads(out.read_text()) == results and not list(tmp_path.glob("*.tmp"))
    assert results["logits"]["same_argmax_as_transformers"] and results["logits"]["rel_diff_vs_transformers"] < 1e-4
    row = results["decode"]
    assert row["test"] == "tg6@d5" and row["attncli_tokens_per_s"] > 0 and "llama.cpp_tokens_per_s" not in row
    assert len(row["repeats"]["attncli"]) == 2 and set(row["share_of_floor"]) == {"attncli", "transformers"}
    assert [r["test"] for r in results["prefill"]] == ["pp16"]
    assert results["floor_tokens_per_s"] > 0 and len(results["bandwidth_samples_gbs"]) == 3


def test_gguf_export_writes_llamacpp_names_and_rotary_order(tmp_path):
    gguf = pytest.importorskip("gguf")  # bench-only
    from hf_factory import save_variant

    export = load_example("gguf_export")
    folder = tmp_path / "ckpt"
    ref = save_variant("llama", folder)
    path = export.export(folder, tmp_path / "m.gguf")
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    cfg = ref.config
    d = cfg.hidden_size // cfg.num_attention_heads
    assert {"token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight", "blk.0.ffn_gate.weight"} <= set(tensors)
    q = torch.tensor(tensors["blk.0.attn_q.weight"].data).reshape(cfg.num_attention_heads, d, -1)
    hf_q = ref.model.layers[0].self_attn.q_proj.weight.detach().reshape(cfg.num_attention_heads, d, -1)
    # interleaved pairs: row 2i of a head is HF's row i, row 2i+1 is HF's row i + D/2
    assert torch.equal(q[:, 0::2], hf_q[:, : d // 2]) and torch.equal(q[:, 1::2], hf_q[:, d // 2 :])
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"


def test_profile_decode_step_splits_products_from_the_rest(capsys):
    res = load_example("profile_decode_step").main(["--shape", "tiny-llama", "--steps", "3", "--rows", "5"])
    assert res["step_ms"] > 0 and res["products_ms"] > 0 and res["calls"] > 0
    assert "matrix products" in capsys.readouterr().out


def test_gpu_check_quick_runs_every_section_on_the_cpu(tmp_path, capsys):
    """The device check is one prepared command for a lent GPU: its CPU mode keeps it working."""
    res = load_example("gpu_check").main(["--device", "cpu", "--quick", "--new", "6", "--out-dir", str(tmp_path)])
    failed = {k: v for k, v in res["sections"].items() if not v["ok"]}
    assert not failed, failed
    assert set(res["sections"]) == {"parity", "compile", "syncs", "kernels", "check", "decode", "load", "profile"}
    assert json.loads((tmp_path / "cpu-gpu-check.json").read_text())["device"] == "cpu"
    assert (tmp_path / "cpu-quadratic.json").exists()
    kernels = res["sections"]["kernels"]
    assert kernels["kernels"]["llama/sdpa/decode"]
    assert kernels["reported"]["mistral/sdpa/decode"] == "sdpa/flash"  # W keys, no mask
    assert kernels["reported"]["llama/flex/prefill"] == "flex"
    profile = res["sections"]["profile"]
    assert {r["kernel"] for r in profile["compiled_rows"]} == {"inductor"} and "first_row_not_inflated" in profile
    assert "section   result" in capsys.readouterr().out


def test_bench_tp_times_tp1_and_tp2_in_one_run():
    res = load_example("bench_tp").main(["--shape", "tiny-llama", "--rounds", "1", "--seq-len", "16", "--repeats", "1"])
    assert set(res["tp1_ms"]) == set(res["tp2_ms"]) == {"prefill", "decode"}
    assert res["collectives_per_step"] == 2 * 2 + 2
    gpu = res["expected_gpu_decode_ms"]
    assert gpu[1]["llama-3.1-8b"] > gpu[2]["llama-3.1-8b"] > gpu[8]["llama-3.1-8b"]
