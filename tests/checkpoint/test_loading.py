"""Finding files, refusing what must be refused, and loading within memory bounds."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap

import pytest
import torch

from attncli.errors import BadInputError, ModelLoadError
from attncli.checkpoint.files import find_model
from attncli.checkpoint.load import inspect_checkpoint, load_model
from attncli.model.build import resolve_device, resolve_dtype
from attncli.checkpoint.reader import SafetensorsFile
from hf_factory import rewrite_config


def copy_model(src, dst):
    dst.mkdir(exist_ok=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_missing_path(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        find_model(tmp_path / "nope")


def test_folder_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(BadInputError, match="no config.json"):
        find_model(tmp_path)


def test_config_not_json(saved, tmp_path):
    folder = copy_model(saved("llama")[0], tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        find_model(folder)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt"])
def test_pickle_only_folder_is_refused(tmp_path, name):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / name).write_bytes(b"\x80\x04pickle")
    with pytest.raises(BadInputError, match="pickle.*safetensors"):
        find_model(tmp_path)
    with pytest.raises(BadInputError, match="pickle"):
        find_model(tmp_path / name)
    (tmp_path / "config.json").unlink()  # the pickle is the more useful thing to say
    with pytest.raises(BadInputError, match="pickle"):
        find_model(tmp_path)


def test_truncated_safetensors(saved, tmp_path):
    folder = copy_model(saved("llama")[0], tmp_path / "m")
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(folder, device="cpu")


def test_absurd_header_size(saved, tmp_path):
    folder = copy_model(saved("llama")[0], tmp_path / "m")
    f = folder / "model.safetensors"
    f.write_bytes(struct.pack("<Q", 2**60) + f.read_bytes()[8:])
    with pytest.raises(ModelLoadError, match="header claims"):
        SafetensorsFile(f)


def test_header_not_json(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{}")
    with pytest.raises(ModelLoadError, match="not JSON"):
        SafetensorsFile(f)


def test_weights_that_do_not_fit_list_both_shapes(saved, tmp_path):
    folder = copy_model(saved("llama")[0], tmp_path / "m")
    rewrite_config(folder, intermediate_size=48)
    with pytest.raises(ModelLoadError) as err:
        inspect_checkpoint(folder)
    msg = str(err.value)
    assert "wrong shape" in msg and "mlp.gate_proj.weight is [64, 32], config needs [48, 32]" in msg


def test_missing_and_unexpected_tensors_are_listed(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy_model(saved("llama")[0], tmp_path / "m")
    state = load_file(folder / "model.safetensors")
    state.pop("model.norm.weight")
    state["model.extra.weight"] = torch.zeros(2)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelLoadError) as err:
        load_model(folder, device="cpu")
    assert "missing 1: model.norm.weight [32]" in str(err.value)
    assert "unexpected 1: model.extra.weight" in str(err.value)


def test_untied_config_without_lm_head_is_missing(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy_model(saved("llama")[0], tmp_path / "m")
    state = load_file(folder / "model.safetensors")
    state.pop("lm_head.weight")
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match="missing 1: lm_head.weight"):
        inspect_checkpoint(folder)
    rewrite_config(folder, tie_word_embeddings=True)  # tied: the embedding serves as head
    assert load_model(folder, device="cpu").config.tie_word_embeddings


def test_device_and_dtype_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("auto", "bfloat16", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", "bfloat16", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", None, torch.device("cpu")) == torch.float16
    with pytest.raises(BadInputError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", None, torch.device("cpu"))
    with pytest.raises(BadInputError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_absent_is_a_clear_error():
    with pytest.raises(BadInputError, match="CUDA is not available"):
        resolve_device("cuda")


# VmHWM (the process image's resident high-water mark), not ru_maxrss: Linux carries
# ru_maxrss over from the parent across fork+exec, so under pytest it reports pytest.
MEMORY_PROBE = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from attncli.checkpoint.load import load_model

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    before = status("VmHWM")  # imports done: the high-water mark so far
    lm = load_model(sys.argv[1], device="cpu")
    peak = status("VmHWM")
    size = os.path.getsize(os.path.join(sys.argv[1], "model.safetensors"))
    print(json.dumps({"ratio": (peak - before) / size, "bytes": size}))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux /proc")
def test_load_peak_memory_is_near_the_checkpoint_size(tmp_path):
    """A ~300 MB float32 checkpoint loads with process memory growing by <= 1.3x its size
    (meta-device build, each tensor read straight into its final place)."""
    from safetensors.torch import save_file

    cfg = dict(model_type="llama", vocab_size=8192, hidden_size=1024, num_hidden_layers=4,
               num_attention_heads=16, num_key_value_heads=4, intermediate_size=4096,
               max_position_embeddings=256, tie_word_embeddings=False, dtype="float32")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    c, i, kv = 1024, 4096, 256
    state = {"model.embed_tokens.weight": torch.zeros(8192, c), "lm_head.weight": torch.zeros(8192, c),
             "model.norm.weight": torch.ones(c)}
    for n in range(4):
        p = f"model.layers.{n}."
        state.update({p + "self_attn.q_proj.weight": torch.zeros(c, c), p + "self_attn.k_proj.weight": torch.zeros(kv, c),
                      p + "self_attn.v_proj.weight": torch.zeros(kv, c), p + "self_attn.o_proj.weight": torch.zeros(c, c),
                      p + "mlp.gate_proj.weight": torch.zeros(i, c), p + "mlp.up_proj.weight": torch.zeros(i, c),
                      p + "mlp.down_proj.weight": torch.zeros(c, i), p + "input_layernorm.weight": torch.ones(c),
                      p + "post_attention_layernorm.weight": torch.ones(c)})
    save_file(state, tmp_path / "model.safetensors")
    del state
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    print(f"load peak: {result['ratio']:.3f}x of {result['bytes'] / 2**20:.0f} MiB")
    assert result["ratio"] <= 1.3


def test_runs_without_numpy(saved):
    """numpy is not a runtime dependency (transformers brings it to the test venv only):
    loading and generating must work with it unimportable."""
    folder, _ = saved("llama")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["numpy"] = None  # any `import numpy` now fails
        import warnings
        warnings.simplefilter("ignore")
        from attncli.checkpoint.load import load_model
        from attncli.generate.loop import generate
        lm = load_model({str(folder)!r}, device="cpu")
        gen = generate(lm.model, [[1, 2, 3]], max_new_tokens=3)
        for _ in gen:
            pass
        print(len(gen.rows[0].tokens))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr[-2000:]


def test_each_file_is_opened_once_for_all_its_chunks(saved, monkeypatch):
    """Converted tensors are read in many chunks through one handle per file (the loader
    reopened the file for every chunk), and every chunk lands where it belongs."""
    import builtins

    from attncli.checkpoint import load as loader
    from attncli.checkpoint import reader as reader_mod

    folder, _ = saved("llama")
    want = load_model(folder, device="cpu", dtype="float32").model.state_dict()
    opened = []
    real_open = builtins.open

    def counting_open(path, *a, **kw):
        opened.append(str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(reader_mod, "open", counting_open, raising=False)
    monkeypatch.setattr(loader, "CHUNK_BYTES", 256)  # every matrix in many chunks
    got = load_model(folder, device="cpu", dtype="bfloat16").model.state_dict()  # converted: the chunked path
    files = {p for p in opened if p.endswith(".safetensors")}
    assert files and all(opened.count(p) <= 2 for p in files)  # the header, then one handle for the reads
    for name, t in want.items():
        torch.testing.assert_close(got[name].float(), t.bfloat16().float(), rtol=0, atol=0)


def test_staging_alternates_buffers_and_fences_each_before_reuse(monkeypatch):
    """On CUDA two pinned buffers take turns: a chunk's copy is issued without waiting, and a
    buffer is refilled only after its last copy's event (simulated here with plain buffers)."""
    from attncli.checkpoint.load import Staging

    log = []

    class Fence:
        def record(self, stream):
            self.n = len(log)
            log.append(("record", self.n))

        def synchronize(self):
            log.append(("wait", self.n))

    monkeypatch.setattr(torch.cuda, "Event", Fence)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    st = Staging(torch.device("cpu"), nbytes=64)
    st.overlap, st.buffers, st.fences = True, [torch.zeros(64, dtype=torch.uint8) for _ in range(2)], [None, None]
    target = torch.empty(3, 64, dtype=torch.uint8)
    taken = []
    for i in range(3):
        buf = st.take()
        taken.append(buf.data_ptr())
        buf.fill_(i)
        st.copy(target[i], buf)
    st.finish()
    assert taken[0] != taken[1] and taken[0] == taken[2]  # two buffers, in turn
    assert log[:4] == [("record", 0), ("record", 1), ("wait", 0), ("record", 3)]  # the third waits on the first
    assert [int(target[i, 0]) for i in range(3)] == [0, 1, 2]
