"""Real models' shapes, kept as data: no download needed to build one.

Each preset is the model's public Hugging Face ``config.json``, trimmed to the fields
that matter (the shape, positions, norms, ids, dtype), plus a ``"source"`` key naming
the Hugging Face repository it came from. ``preset_config(name)`` strips ``"source"``
and hands the rest to ``ModelConfig.from_hf`` -- the same strict reader used for a
downloaded config.json, so a preset cannot smuggle in a field attncli does not
implement.

What was left out of each public file:
  * training-only knobs and metadata (dropouts, ``initializer_range``, ``use_cache``,
    ``transformers_version``, GPT-2's ``summary_*`` / ``task_specific_params``);
  * a few flags whose value in the public file is the no-op default but that
    ``from_hf`` does not know by name (noted per preset below). Dropping a flag that
    is off leaves the math unchanged.

Provenance. Values were checked against copies of each public
config.json found through stored Hugging Face pages: the official page itself where
it was stored (gpt2, gpt2-medium, older revisions), otherwise several derived
repositories that carry the config unchanged and agree with one another (named per
preset). Where the copies disagreed on a field, the note says which value was taken
and why.

``EXPECTED_PARAMETERS`` holds each model's published parameter count: every one here
is an exact integer (``model.num_parameters()`` / safetensors metadata / GGUF
``general.parameter_count``, quoted in many public places), so the tolerance is zero.
A tied LM head is counted once, as both transformers and attncli count it.
"""

from __future__ import annotations

import copy
from typing import Any

from attncli.errors import BadInputError
from attncli.models.config import ModelConfig

PRESETS: dict[str, dict[str, Any]] = {
    # openai-community/gpt2. Official config.json (stored revision b57efa2) gives the
    # shape; the current revision adds activation_function gelu_new and bos/eos 50256
    # (checked against several unchanged copies). config.json has no torch_dtype: the
    # published weights are float32, recorded here so `info` can report it.
    "gpt2": {
        "source": "openai-community/gpt2",
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_ctx": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-05,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "torch_dtype": "float32",
    },
    # openai-community/gpt2-medium. Official config.json (stored revision 0a83037) gives
    # the shape; it also carries n_special=0 / predict_special_tokens=true, leftovers of
    # the OpenAI-GPT double-heads class that GPT2LMHeadModel never reads -- dropped.
    # activation/bos/eos as for gpt2; weights published in float32.
    "gpt2-medium": {
        "source": "openai-community/gpt2-medium",
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_ctx": 1024,
        "n_embd": 1024,
        "n_layer": 24,
        "n_head": 16,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-05,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "torch_dtype": "float32",
    },
    # HuggingFaceTB/SmolLM2-135M. Checked against unchanged copies (e.g.
    # MaxBlumenfeld/smollm2-135m-bootleg-instruct02, jucanbe/SmolLM2-FT-DPO). Dropped:
    # is_llama_config=true (a nanotron export marker) and rope_interleaved=false (the
    # standard rotate-half RoPE, which is what attncli implements).
    # The base model's bos/eos are 0 (<|endoftext|>); the -Instruct model uses 1/2.
    "smollm2-135m": {
        "source": "HuggingFaceTB/SmolLM2-135M",
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "hidden_act": "silu",
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-05,
        "rope_theta": 100000,
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": True,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "torch_dtype": "bfloat16",
    },
    # HuggingFaceTB/SmolLM2-360M. Checked against unchanged copies (e.g.
    # davanstrien/Smol-Hub-tldr, assskelad/smollm2-360M-sft_SmallThoughts). Same dropped
    # flags as smollm2-135m.
    "smollm2-360m": {
        "source": "HuggingFaceTB/SmolLM2-360M",
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 49152,
        "hidden_size": 960,
        "intermediate_size": 2560,
        "num_hidden_layers": 32,
        "num_attention_heads": 15,
        "num_key_value_heads": 5,
        "head_dim": 64,
        "hidden_act": "silu",
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-05,
        "rope_theta": 100000,
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": True,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "torch_dtype": "bfloat16",
    },
    # Qwen/Qwen2.5-0.5B. Checked against an unchanged copy (Writer/bdiff-test
    # config_diff_qwen-0-5b.json, transformers_version 4.40.1) and derived copies.
    # sliding_window=32768 is present but use_sliding_window=false, so no layer slides.
    # Dropped: use_mrope=false (multimodal RoPE off). Qwen2 always has q/k/v biases.
    "qwen2.5-0.5b": {
        "source": "Qwen/Qwen2.5-0.5B",
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "vocab_size": 151936,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": 24,
        "tie_word_embeddings": True,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "torch_dtype": "bfloat16",
    },
    # Qwen/Qwen3-0.6B. Checked against an unchanged copy (TensorStack/TextEncoder
    # Qwen-3-06B/config.json, transformers_version 4.51.0). head_dim 128 is explicit
    # (16 heads x 128 = 2048 != hidden_size 1024); Qwen3 always has q/k RMSNorm.
    "qwen3-0.6b": {
        "source": "Qwen/Qwen3-0.6B",
        "model_type": "qwen3",
        "architectures": ["Qwen3ForCausalLM"],
        "vocab_size": 151936,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "hidden_act": "silu",
        "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000,
        "rope_scaling": None,
        "attention_bias": False,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": 28,
        "tie_word_embeddings": True,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "torch_dtype": "bfloat16",
    },
    # meta-llama/Llama-3.2-1B (gated on the Hub). Checked against copies naming it as
    # _name_or_path (e.g. RJ1200/results, ariG23498/layer-skip-v0) and the -Instruct
    # config (which differs only in eos ids). llama3 RoPE scaling, factor 32.
    "llama-3.2-1b": {
        "source": "meta-llama/Llama-3.2-1B",
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "hidden_act": "silu",
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "attention_bias": False,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": True,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "torch_dtype": "bfloat16",
    },
    # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T (the base model; the
    # -Chat-v1.0 model has the same shape). Shape checked against many unchanged copies.
    # torch_dtype: derived copies disagree (they record their own training dtype); the
    # official checkpoint is float32 (its safetensors metadata reports F32 for all
    # 1,100,048,384 parameters, 4.4 GB), so float32. The Chat-v1.0 release is bfloat16.
    "tinyllama-1.1b": {
        "source": "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T",
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 32000,
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    },
    # mistralai/Mistral-7B-v0.1. Checked against an unchanged copy (d-matrix/Mistral,
    # transformers_version 4.34.0.dev0) and many derived ones. sliding_window 4096 on
    # every layer (Mistral has no per-layer types).
    "mistral-7b": {
        "source": "mistralai/Mistral-7B-v0.1",
        "model_type": "mistral",
        "architectures": ["MistralForCausalLM"],
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "sliding_window": 4096,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "bfloat16",
    },
    # meta-llama/Meta-Llama-3-8B (gated on the Hub). Checked against copies naming it as
    # _name_or_path (e.g. pandyamarut/Meta-Llama-3-8B, Ctc8/autograder_llama). Plain
    # RoPE (no scaling; that came with Llama 3.1), 8k context.
    "llama-3-8b": {
        "source": "meta-llama/Meta-Llama-3-8B",
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "hidden_act": "silu",
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "torch_dtype": "bfloat16",
    },
}

# Published parameter counts (tied embeddings counted once). All exact integers, each
# found quoted in several public places (HF num_parameters, safetensors metadata, GGUF
# general.parameter_count).
EXPECTED_PARAMETERS: dict[str, int] = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "smollm2-135m": 134_515_008,
    "smollm2-360m": 361_821_120,
    "qwen2.5-0.5b": 494_032_768,
    "qwen3-0.6b": 596_049_920,
    "llama-3.2-1b": 1_235_814_400,
    "tinyllama-1.1b": 1_100_048_384,
    "mistral-7b": 7_241_732_096,
    "llama-3-8b": 8_030_261_248,
}

# Relative tolerance for a preset whose published count is only approximate
# ("~7.2B"); a preset not listed here must match EXPECTED_PARAMETERS exactly.
# Every preset above has an exact published count, so this is empty.
PARAMETER_TOLERANCE: dict[str, float] = {}


def preset_names() -> list[str]:
    """The known preset names, in the order they are listed (smallest first, roughly)."""
    return list(PRESETS)


def _known() -> str:
    return ", ".join(PRESETS)


def _entry(name: str) -> dict[str, Any]:
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise BadInputError(f"unknown preset {name!r}; known presets: {_known()}") from None


def preset_hf_config(name: str) -> dict[str, Any]:
    """The preset as a config.json dict (a fresh copy, without the ``source`` key)."""
    cfg = copy.deepcopy(_entry(name))
    cfg.pop("source", None)
    return cfg


def preset_config(name: str) -> ModelConfig:
    """Build the ModelConfig of a real model from its stored config.json fields."""
    return ModelConfig.from_hf(preset_hf_config(name))


def preset_source(name: str) -> str:
    """The Hugging Face repository the preset's fields were taken from."""
    return _entry(name)["source"]
