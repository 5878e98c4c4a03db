"""Presets: real models' config.json fields, kept as data.

Every preset must pass the strict ``ModelConfig.from_hf`` (so it carries no field attncli
does not implement), give the model's published parameter count, and give the same
count as transformers builds from the same fields. Everything runs on the meta device:
no weights are ever allocated, not even for the 8B models.
"""

from __future__ import annotations

import pytest
import torch

from attncli.errors import BadInputError
from attncli.model.summary import model_info, parameter_count
from attncli.model.config import ModelConfig
from attncli.model.presets import (
    EXPECTED_PARAMETERS,
    PARAMETER_TOLERANCE,
    PRESETS,
    preset_config,
    preset_hf_config,
    preset_names,
    preset_source,
)

REQUIRED = [
    "gpt2", "gpt2-medium", "smollm2-135m", "smollm2-360m", "qwen2.5-0.5b",
    "qwen3-0.6b", "llama-3.2-1b", "tinyllama-1.1b", "mistral-7b", "llama-3-8b",
    # the second round's families
    "gemma-2-2b", "gemma-3-1b", "pythia-160m", "pythia-1b", "phi-3-mini", "olmo-2-1b", "smollm3-3b",
]
NAMES = preset_names()
NO_BOS = {"olmo-2-1b"}  # OLMo 2's tokenizer puts no BOS before a prompt; its config.json has none


def test_required_presets_exist_and_are_documented():
    assert set(REQUIRED) <= set(NAMES)
    assert set(NAMES) == set(PRESETS) == set(EXPECTED_PARAMETERS)
    assert set(PARAMETER_TOLERANCE) <= set(NAMES)
    for name in NAMES:
        source = preset_source(name)
        assert source.count("/") == 1 and " " not in source, source  # an HF repo id
        assert PRESETS[name]["model_type"]


@pytest.mark.parametrize("name", NAMES)
def test_preset_builds_through_strict_from_hf(name):
    cfg = preset_config(name)
    assert isinstance(cfg, ModelConfig)
    raw = preset_hf_config(name)
    assert "source" not in raw and raw["model_type"] == PRESETS[name]["model_type"]
    # The checkpoint dtype and ids travel through.
    assert cfg.dtype in ("float32", "bfloat16", "float16")
    assert (cfg.bos_token_id is not None or name in NO_BOS) and cfg.eos_token_ids
    assert cfg.vocab_size > max(cfg.eos_token_ids)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_published(name):
    ours = parameter_count(preset_config(name))
    expected = EXPECTED_PARAMETERS[name]
    tolerance = PARAMETER_TOLERANCE.get(name, 0.0)
    assert tolerance <= 0.005
    if tolerance == 0.0:
        assert ours == expected
    else:
        assert abs(ours - expected) <= tolerance * expected


@pytest.mark.parametrize("name", NAMES)
def test_transformers_builds_the_same_model(name):
    """The reference reads the same fields and, on the meta device, has our count."""
    transformers = pytest.importorskip("transformers")
    fields = preset_hf_config(name)
    model_type = fields.pop("model_type")
    hf_cfg = transformers.AutoConfig.for_model(model_type, **fields)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_cfg)
    assert all(p.device.type == "meta" for p in model.parameters())
    reference = sum(p.numel() for p in model.parameters())  # a tied tensor is yielded once
    assert reference == parameter_count(preset_config(name))


def test_preset_config_does_not_share_or_mutate_the_data():
    before = {k: dict(v) for k, v in PRESETS.items()}
    a = preset_hf_config("llama-3.2-1b")
    a["rope_scaling"]["factor"] = 1.0
    a["vocab_size"] = 7
    preset_config("llama-3.2-1b")
    assert PRESETS["llama-3.2-1b"]["rope_scaling"]["factor"] == 32.0
    assert {k: dict(v) for k, v in PRESETS.items()} == before


def test_mistral_7b_slides_on_every_layer():
    cfg = preset_config("mistral-7b")
    assert cfg.sliding_window == 4096
    assert cfg.layer_types == ["sliding"] * cfg.num_layers == ["sliding"] * 32
    assert all(cfg.window_of(i) == 4096 for i in range(cfg.num_layers))
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (32, 8, 128)
    assert not cfg.tie_word_embeddings and cfg.rope.theta == 10000.0


def test_llama_3_2_1b_llama3_rope_and_tied():
    cfg = preset_config("llama-3.2-1b")
    rope = cfg.rope
    assert rope.kind == "llama3" and rope.factor == 32.0 and rope.theta == 500000.0
    assert (rope.low_freq_factor, rope.high_freq_factor) == (1.0, 4.0)
    assert rope.original_max_position_embeddings == 8192
    assert cfg.tie_word_embeddings and cfg.max_position_embeddings == 131072
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (32, 8, 64)
    assert not cfg.has_sliding_layers


def test_qwen3_0_6b_head_dim_and_qk_norm():
    cfg = preset_config("qwen3-0.6b")
    assert cfg.head_dim == 128 and cfg.q_dim == 2048 != cfg.hidden_size == 1024
    assert cfg.qk_norm and not cfg.qkv_bias and cfg.tie_word_embeddings
    assert cfg.attn_scale == 128**-0.5
    assert cfg.eos_token_ids == [151645] and cfg.max_position_embeddings == 40960
    assert not cfg.has_sliding_layers


def test_qwen2_5_0_5b_bias_and_no_sliding():
    cfg = preset_config("qwen2.5-0.5b")
    assert cfg.qkv_bias and not cfg.o_bias and not cfg.qk_norm
    # config.json names a 32768 window but switches it off: no layer slides.
    assert PRESETS["qwen2.5-0.5b"]["use_sliding_window"] is False
    assert PRESETS["qwen2.5-0.5b"]["sliding_window"] == 32768
    assert cfg.sliding_window is None and not cfg.has_sliding_layers
    assert cfg.layer_types == ["full"] * 24
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (14, 2, 64)
    assert cfg.tie_word_embeddings and cfg.norm_eps == 1e-6


def test_gpt2_shapes():
    small, medium = preset_config("gpt2"), preset_config("gpt2-medium")
    assert (small.pos, small.norm, small.act, small.intermediate_size) == ("learned", "layernorm", "gelu_tanh", 3072)
    assert (medium.num_layers, medium.hidden_size, medium.num_heads) == (24, 1024, 16)
    assert small.tie_word_embeddings and small.max_position_embeddings == 1024


def test_smollm2_and_tinyllama_gqa_shapes():
    s135, s360, tiny = (preset_config(n) for n in ("smollm2-135m", "smollm2-360m", "tinyllama-1.1b"))
    assert (s135.num_heads, s135.num_kv_heads, s135.head_dim, s135.rope.theta) == (9, 3, 64, 100000.0)
    assert (s360.num_heads, s360.num_kv_heads, s360.head_dim) == (15, 5, 64)
    assert s135.tie_word_embeddings and s360.tie_word_embeddings
    assert (tiny.num_heads, tiny.num_kv_heads, tiny.num_layers) == (32, 4, 22)
    assert not tiny.tie_word_embeddings and tiny.dtype == "float32"


def test_llama_3_8b_plain_rope_8k():
    cfg = preset_config("llama-3-8b")
    assert cfg.rope.kind == "default" and cfg.rope.theta == 500000.0
    assert cfg.max_position_embeddings == 8192 and not cfg.tie_word_embeddings
    assert cfg.vocab_size == 128256 and cfg.eos_token_ids == [128001]


def test_model_info_on_a_big_preset_allocates_nothing():
    info = model_info(preset_config("llama-3-8b"), dtype=torch.bfloat16, context=8192)
    assert info["parameters"] == EXPECTED_PARAMETERS["llama-3-8b"]
    assert info["weight_bytes"] == 2 * EXPECTED_PARAMETERS["llama-3-8b"]
    assert info["checkpoint_dtype"] == "bfloat16"


@pytest.mark.parametrize("bad", ["gpt-2", "Mistral-7B", "", "llama"])
def test_unknown_preset_lists_known_names_on_one_line(bad):
    for call in (preset_config, preset_source, preset_hf_config):
        with pytest.raises(BadInputError) as err:
            call(bad)
        message = str(err.value)
        assert "\n" not in message
        assert repr(bad) in message
        assert all(name in message for name in NAMES)


def test_every_preset_keeps_its_provenance_note():
    from attncli.model.presets import NOTES

    assert set(NOTES) == set(PRESETS)
    for name in NAMES:
        assert len(NOTES[name]) >= 40, name  # where the fields were checked, and what was dropped


def test_info_names_the_new_families_layer_kinds():
    gemma2 = model_info(preset_config("gemma-2-2b"), dtype=torch.bfloat16)
    assert gemma2["sliding_layers"] == list(range(0, 26, 2)) and gemma2["sliding_window"] == 4096
    assert (gemma2["attn_softcap"], gemma2["final_softcap"], gemma2["norms"]) == (50.0, 30.0, "sandwich")
    gemma3 = model_info(preset_config("gemma-3-1b"), dtype=torch.bfloat16)
    assert [i for i in range(26) if i not in gemma3["sliding_layers"]] == [5, 11, 17, 23]
    assert gemma3["attn_softcap"] is None and "sliding layers theta 10000" in gemma3["position"]
    smol = model_info(preset_config("smollm3-3b"), dtype=torch.bfloat16)
    assert smol["nope_layers"] == list(range(3, 36, 4)) and smol["sliding_layers"] == []
    pythia = model_info(preset_config("pythia-160m"), dtype=torch.float16)
    assert pythia["rotary_dims"] == 16 and pythia["parallel_residual"] and "16 of 64 dims rotate" in pythia["position"]
    phi = model_info(preset_config("phi-3-mini"), dtype=torch.bfloat16)
    assert phi["sliding_window"] == 2047 and len(phi["sliding_layers"]) == 32
