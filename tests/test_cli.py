"""The command surface: exit codes, one-line errors, `info` output."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

from helpers import assert_one_line_error, run
from hf_factory import rewrite_config


@pytest.fixture
def model_copy(saved, tmp_path):
    def make(name="llama"):
        dst = tmp_path / name
        shutil.copytree(saved(name)[0], dst)
        return dst

    return make


def test_info_table_and_json(saved, capfd):
    folder, _ = saved("qwen2-sliding-layers")
    code, out, err = run(capfd, "info", "-m", str(folder))
    assert code == 0 and err == ""
    assert "qwen2" in out and "sliding layers" in out and "KV cache / token" in out
    code, out, _ = run(capfd, "info", "-m", str(folder), "--json", "--context", "10")
    info = json.loads(out)
    assert info["architecture"] == "qwen2" and info["sliding_window"] == 4 and info["sliding_layers"] == [1, 2]
    # 3 layers x K and V x 2 kv heads x 8 dims x 4 bytes
    assert info["kv_cache_bytes_per_token"] == 3 * 2 * 2 * 8 * 4
    assert info["kv_cache_bytes"] == 10 * info["kv_cache_bytes_per_token"]
    assert info["weight_bytes"] == info["parameters"] * 4 == info["checkpoint_bytes"]
    assert info["memory_bytes"] == info["weight_bytes"] + info["kv_cache_bytes"]


def test_info_counts_a_tied_head_once(saved, capfd):
    folder, ref = saved("llama-mqa-tied")
    code, out, _ = run(capfd, "info", "-m", str(folder), "--json")
    assert json.loads(out)["parameters"] == sum(p.numel() for p in ref.parameters())


def test_model_from_environment(saved, capfd, monkeypatch):
    monkeypatch.setenv("ATTNCLI_MODEL", str(saved("gpt2")[0]))
    code, out, _ = run(capfd, "info", "--json")
    assert code == 0 and json.loads(out)["architecture"] == "gpt2"


def test_missing_path(capfd, tmp_path):
    assert_one_line_error(*run(capfd, "info", "-m", str(tmp_path / "nope"))[::2], 2, "does not exist")


def test_folder_without_config(capfd, tmp_path):
    assert_one_line_error(*run(capfd, "info", "-m", str(tmp_path))[::2], 2, "no config.json")


def test_config_not_json(capfd, model_copy):
    folder = model_copy()
    (folder / "config.json").write_text("{oops")
    assert_one_line_error(*run(capfd, "info", "-m", str(folder))[::2], 1, "not valid JSON")


def test_unsupported_model_type(capfd, model_copy):
    folder = model_copy()
    rewrite_config(folder, model_type="mamba")
    assert_one_line_error(*run(capfd, "info", "-m", str(folder))[::2], 1, "unsupported model_type 'mamba'; supported: gemma2, gemma3, gemma3_text, gpt2, gpt_neox, llama")


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt"])
def test_pickle_only_folder(capfd, tmp_path, name):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / name).write_bytes(b"\x80\x04")
    assert_one_line_error(*run(capfd, "info", "-m", str(tmp_path))[::2], 2, "pickle checkpoint, which can run code")


def test_truncated_safetensors(capfd, model_copy):
    f = model_copy() / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-64])
    assert_one_line_error(*run(capfd, "info", "-m", str(f.parent))[::2], 1, "truncated")


def test_absurd_header(capfd, model_copy):
    f = model_copy() / "model.safetensors"
    f.write_bytes(struct.pack("<Q", 10**15) + f.read_bytes()[8:])
    assert_one_line_error(*run(capfd, "info", "-m", str(f.parent))[::2], 1, "header claims 1,000,000,000,000,000 bytes")


def test_weights_that_do_not_fit(capfd, model_copy):
    folder = model_copy()
    rewrite_config(folder, intermediate_size=48)
    # shapes print as written: "[64, 32]" must not be eaten as console markup
    assert_one_line_error(*run(capfd, "info", "-m", str(folder))[::2], 1,
                          "model.layers.0.mlp.gate_proj.weight is [64, 32], config needs [48, 32]")


def test_unknown_dtype(capfd, saved):
    assert_one_line_error(*run(capfd, "info", "-m", str(saved("llama")[0]), "--dtype", "fp4")[::2], 2, "unknown dtype 'fp4'")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_where_there_is_none(capfd, saved):
    assert_one_line_error(*run(capfd, "info", "-m", str(saved("llama")[0]), "--device", "cuda")[::2], 2, "CUDA is not available")


def test_usage_errors_are_one_line(capfd):
    assert_one_line_error(*run(capfd, "info", "--bogus")[::2], 2, "No such option: --bogus")
    assert_one_line_error(*run(capfd, "info", "--context", "0")[::2], 2, "--context")
    assert_one_line_error(*run(capfd, "frobnicate")[::2], 2, "No such command")


def test_help_and_version(capfd):
    code, out, _ = run(capfd, "--help")
    assert code == 0 and all(c in out for c in ("generate", "inspect-mask", "profile", "info"))
    code, out, _ = run(capfd, "--version")
    assert code == 0 and out.startswith("attncli ")


def test_console_script_end_to_end(saved, tmp_path):
    """The installed entry point, in a fresh process: exit codes and no traceback."""
    exe = shutil.which("attncli", path=os.path.dirname(sys.executable)) or shutil.which("attncli")
    cmd = [exe] if exe else [sys.executable, "-m", "attncli.cli"]
    ok = subprocess.run([*cmd, "info", "-m", str(saved("gpt2")[0]), "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["architecture"] == "gpt2"
    bad = subprocess.run([*cmd, "info", "-m", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_help_does_not_import_torch():
    code = ("import sys, contextlib, io; from attncli.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['--help']); main(['generate', '--help'])\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # the whole entry point, --tp's launcher included


@pytest.mark.parametrize("message", ["CUDA out of memory. Tried to allocate 48.00 GiB",
                                     "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"])
def test_out_of_memory_is_one_line_not_an_internal_error(capfd, monkeypatch, message):
    import torch

    from attncli.model.transformer import Transformer

    def no_memory(self, *a, **kw):
        raise (torch.OutOfMemoryError if message.startswith("CUDA out") else RuntimeError)(message)

    monkeypatch.setattr(Transformer, "forward", no_memory)
    code, _, err = run(capfd, "generate", "The cat", "-n", "2")
    assert_one_line_error(code, err, 1, "out of memory: ")
    assert "internal error" not in err and "shorter context" in err
