"""Write a Hugging Face-layout GPT-2 or Llama checkpoint (safetensors) as an f32 GGUF file, so
that llama.cpp runs the very weights attncli and transformers run (examples/bench_vs_llamacpp.py).

    python examples/gguf_export.py CHECKPOINT_DIR out.gguf

Bench-only: needs the `gguf` package (pip install gguf). Facts used (llama.cpp's GGUF naming):
  - tensors are written (out, in) as PyTorch stores nn.Linear weights; GPT-2's Conv1D weights,
    stored (in, out), are transposed, and its fused c_attn stays fused as ``attn_qkv``;
  - Llama's q and k rows are permuted from the rotate-half layout of HF checkpoints back to
    the interleaved-pairs layout llama.cpp's RoPE expects (k with the KV head count);
  - a tied LM head is left out: llama.cpp then reads ``token_embd`` for the output;
  - no tokenizer: ``tokenizer.ggml.model = "none"`` with the vocab size, which llama.cpp
    accepts (llama-bench feeds random token ids).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ARCHS = {"gpt2": "gpt2", "llama": "llama"}  # HF model_type -> GGUF architecture


def read_tensors(folder: Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint's safetensors files as float32 numpy arrays."""
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, framework="pt") as f:
            for name in f.keys():
                out[name] = f.get_tensor(name).float().numpy()
    return out


def permute_rotary(w: np.ndarray, heads: int) -> np.ndarray:
    """(heads*D, in) rows from rotate-half order [x0..x(D/2-1), xD/2..] to pairs (x0, xD/2), ..."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gpt2_tensors(cfg: dict, t: dict[str, np.ndarray]):
    t = {k.removeprefix("transformer."): v for k, v in t.items()}
    yield "token_embd.weight", t["wte.weight"]
    yield "position_embd.weight", t["wpe.weight"]
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        for ours, theirs, conv in [("attn_norm", "ln_1", False), ("attn_qkv", "attn.c_attn", True),
                                   ("attn_output", "attn.c_proj", True), ("ffn_norm", "ln_2", False),
                                   ("ffn_up", "mlp.c_fc", True), ("ffn_down", "mlp.c_proj", True)]:
            w = t[p + theirs + ".weight"]
            yield f"blk.{i}.{ours}.weight", np.ascontiguousarray(w.T) if conv else w
            yield f"blk.{i}.{ours}.bias", t[p + theirs + ".bias"]
    yield "output_norm.weight", t["ln_f.weight"]
    yield "output_norm.bias", t["ln_f.bias"]


def llama_tensors(cfg: dict, t: dict[str, np.ndarray]):
    heads, kv_heads = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    yield "token_embd.weight", t["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        yield f"blk.{i}.attn_norm.weight", t[p + "input_layernorm.weight"]
        yield f"blk.{i}.attn_q.weight", permute_rotary(t[p + "self_attn.q_proj.weight"], heads)
        yield f"blk.{i}.attn_k.weight", permute_rotary(t[p + "self_attn.k_proj.weight"], kv_heads)
        yield f"blk.{i}.attn_v.weight", t[p + "self_attn.v_proj.weight"]
        yield f"blk.{i}.attn_output.weight", t[p + "self_attn.o_proj.weight"]
        yield f"blk.{i}.ffn_norm.weight", t[p + "post_attention_layernorm.weight"]
        for ours, theirs in [("ffn_gate", "gate_proj"), ("ffn_up", "up_proj"), ("ffn_down", "down_proj")]:
            yield f"blk.{i}.{ours}.weight", t[p + f"mlp.{theirs}.weight"]
    yield "output_norm.weight", t["model.norm.weight"]
    if not cfg.get("tie_word_embeddings", True) and "lm_head.weight" in t:
        yield "output.weight", t["lm_head.weight"]


def add_metadata(w, cfg: dict) -> None:
    if cfg["model_type"] == "gpt2":
        w.add_context_length(cfg["n_positions"])
        w.add_embedding_length(cfg["n_embd"])
        w.add_feed_forward_length(cfg.get("n_inner") or 4 * cfg["n_embd"])
        w.add_block_count(cfg["n_layer"])
        w.add_head_count(cfg["n_head"])
        w.add_layer_norm_eps(cfg.get("layer_norm_epsilon", 1e-5))
    else:
        heads = cfg["num_attention_heads"]
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(cfg["hidden_size"])
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_head_count(heads)
        w.add_head_count_kv(cfg.get("num_key_value_heads") or heads)
        w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-6))
        rope = cfg.get("rope_parameters") or {}
        w.add_rope_freq_base(float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))))
        w.add_rope_dimension_count(cfg.get("head_dim") or cfg["hidden_size"] // heads)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_tokenizer_model("none")


def export(folder: Path, out: Path) -> Path:
    """Write ``folder`` (config.json + safetensors) to ``out`` as f32 GGUF; returns ``out``."""
    import gguf

    cfg = json.loads((folder / "config.json").read_text())
    arch = ARCHS.get(cfg.get("model_type"))
    if arch is None:
        raise SystemExit(f"gguf_export: model_type {cfg.get('model_type')!r} is not one of {', '.join(ARCHS)}")
    from attncli.atomic import write_atomic

    tensors = read_tensors(folder)

    def write(tmp: str) -> None:
        w = gguf.GGUFWriter(tmp, arch)
        add_metadata(w, cfg)
        w.add_file_type(gguf.LlamaFileType.ALL_F32)
        for name, value in (gpt2_tensors if arch == "gpt2" else llama_tensors)(cfg, tensors):
            w.add_tensor(name, np.ascontiguousarray(value, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    write_atomic(Path(out), write)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.splitlines()[3].strip())
    print(export(Path(sys.argv[1]), Path(sys.argv[2])))
