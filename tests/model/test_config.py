"""config.json -> ModelConfig: every supported layout, and refusals that name the field."""

from __future__ import annotations

import pytest

from attncli.errors import ModelLoadError
from attncli.model.config import ModelConfig
from attncli.model.families import SUPPORTED
from hf_factory import VARIANTS, hf_config


def hf_dict(name: str) -> dict:
    model_type, overrides = VARIANTS[name]
    return hf_config(model_type, **overrides).to_dict()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_parses(name):
    cfg = ModelConfig.from_hf(hf_dict(name))
    assert cfg.arch == VARIANTS[name][0]
    assert cfg.num_heads % cfg.num_kv_heads == 0


def test_derived_fields():
    cfg = ModelConfig.from_hf(hf_dict("qwen3"))
    assert (cfg.head_dim, cfg.q_dim, cfg.kv_dim, cfg.kv_groups) == (16, 64, 32, 2)
    assert cfg.qk_norm and cfg.attn_scale == 16**-0.5
    gpt2 = ModelConfig.from_hf(hf_dict("gpt2"))
    assert (gpt2.norm, gpt2.mlp, gpt2.pos, gpt2.act, gpt2.intermediate_size) == ("layernorm", "plain", "learned", "gelu_tanh", 128)
    mqa = ModelConfig.from_hf(hf_dict("llama-mqa-tied"))
    assert mqa.num_kv_heads == 1 and mqa.tie_word_embeddings


def test_dtype_and_legacy_torch_dtype():
    d = hf_dict("llama")
    d["dtype"] = "bfloat16"
    assert ModelConfig.from_hf(d).dtype == "bfloat16"
    d.pop("dtype")
    d["torch_dtype"] = "float16"
    assert ModelConfig.from_hf(d).dtype == "float16"


def test_eos_bos_as_int_or_list_and_generation_config_wins():
    d = hf_dict("llama")
    d["eos_token_id"] = [2, 7]
    cfg = ModelConfig.from_hf(d)
    assert cfg.eos_token_ids == [2, 7] and cfg.bos_token_id == 1
    cfg = ModelConfig.from_hf(d, {"eos_token_id": 9, "bos_token_id": [4]})
    assert cfg.eos_token_ids == [9] and cfg.bos_token_id == 4


def test_unknown_model_type_lists_supported():
    with pytest.raises(ModelLoadError) as err:
        ModelConfig.from_hf({"model_type": "t5"})
    assert "'t5'" in str(err.value) and all(s in str(err.value) for s in SUPPORTED)


@pytest.mark.parametrize(
    "name, field, value, words",
    [
        ("llama", "quantization_config", {"quant_method": "gptq"}, "quantization_config"),
        ("llama", "rope_scaling", {"rope_type": "yarn", "factor": 4.0}, "'yarn'"),
        ("llama", "rope_scaling", {"type": "dynamic", "factor": 2.0}, "'dynamic'"),
        ("llama", "partial_rotary_factor", 0.5, "partial_rotary_factor"),
        ("llama", "sliding_window", 16, "sliding_window"),
        ("llama", "hidden_act", "gelu_quick", "hidden_act"),
        ("gpt2", "add_cross_attention", True, "add_cross_attention"),
        ("gpt2", "sliding_window", 8, "sliding_window"),
        ("mistral-window", "layer_types", ["full_attention", "sliding_attention"], "layer_types"),
    ],
)
def test_math_changing_fields_are_refused_by_name(name, field, value, words):
    d = hf_dict(name)
    d[field] = value
    with pytest.raises(ModelLoadError, match=words):
        ModelConfig.from_hf(d)


def test_qwen_window_only_when_switched_on():
    d = hf_dict("qwen2")
    d.update(sliding_window=4, use_sliding_window=False, layer_types=None)
    off = ModelConfig.from_hf(d)
    assert off.sliding_window is None and off.layer_types == ["full", "full"]
    d.update(use_sliding_window=True, max_window_layers=1)
    on = ModelConfig.from_hf(d)
    assert on.sliding_window == 4 and on.layer_types == ["full", "sliding"]


def test_missing_required_field():
    d = hf_dict("llama")
    d.pop("hidden_size")
    with pytest.raises(ModelLoadError, match="hidden_size"):
        ModelConfig.from_hf(d)


def test_inconsistent_heads():
    d = hf_dict("llama")
    d["num_key_value_heads"] = 3
    with pytest.raises(ModelLoadError, match="multiple"):
        ModelConfig.from_hf(d)


def test_neutral_fields_of_real_config_files_are_accepted():
    """Real SmolLM2 / Qwen2.5 / gpt2-medium files carry these; off, they change nothing."""
    d = hf_dict("llama")
    d.update(is_llama_config=True, rope_interleaved=False, use_mrope=False)
    assert ModelConfig.from_hf(d).arch == "llama"
    g = hf_dict("gpt2")
    g.update(n_special=0, predict_special_tokens=True)
    assert ModelConfig.from_hf(g).arch == "gpt2"


@pytest.mark.parametrize("field", ["rope_interleaved", "use_mrope"])
def test_switches_that_change_the_math_are_refused_when_on(field):
    d = hf_dict("qwen2")
    d[field] = True
    with pytest.raises(ModelLoadError, match=field):
        ModelConfig.from_hf(d)
