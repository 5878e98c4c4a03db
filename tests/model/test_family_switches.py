"""Controls for the parity tests of the newer families: each switch a family brings must
change the logits when it is turned off in config.json (else matching transformers would
prove nothing about it), and the model must read the switch where the config puts it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from attncli.checkpoint.load import load_model
from hf_factory import VOCAB


def _ids():
    g = torch.Generator().manual_seed(3)
    return torch.randint(3, VOCAB, (1, 12), generator=g)  # 12 tokens: past every window of 4


def _edit_rope(**params):
    def edit(cfg):
        rope = cfg["rope_parameters"]
        for key, value in params.items():
            if isinstance(value, dict):  # keyed by layer type (Gemma 3)
                rope[key] = {**rope[key], **value}
            else:
                rope[key] = value
    return edit


def _set(**fields):
    def edit(cfg):
        cfg.update(fields)
    return edit


def _drop(*keys):
    def edit(cfg):
        for key in keys:
            cfg.pop(key, None)
    return edit


CONTROLS = {
    "gemma2 attention cap": ("gemma2", _set(attn_logit_softcapping=1e6)),
    "gemma2 final cap": ("gemma2", _set(final_logit_softcapping=1e6)),
    "gemma2 window": ("gemma2", _set(layer_types=["full_attention", "full_attention"])),
    "gemma3 local RoPE base": ("gemma3", _edit_rope(sliding_attention={"rope_theta": 1_000_000.0})),
    "gemma3 q/k norms": ("gemma3", None),  # weights, below
    "pythia partial rotary": ("pythia", _edit_rope(partial_rotary_factor=1.0)),
    "pythia parallel residual": ("pythia", _set(use_parallel_residual=False)),
    "phi3 partial rotary": ("phi3", lambda c: (_edit_rope(partial_rotary_factor=1.0)(c), c.pop("partial_rotary_factor"))),
    "phi3 window": ("phi3", _drop("sliding_window")),
    "smollm3 NoPE layers": ("smollm3", _set(no_rope_layers=[1, 1, 1, 1])),
}


@pytest.mark.parametrize("control", list(CONTROLS))
def test_turning_a_switch_off_changes_the_logits(saved, tmp_path, control):
    name, edit = CONTROLS[control]
    folder, _ = saved(name)
    lm = load_model(folder, device="cpu")
    with torch.no_grad():
        base = lm.model(_ids()).logits
    dst = tmp_path / name
    shutil.copytree(folder, dst)
    if edit is None:  # per-head q/k norm weights set to the identity
        changed = load_model(dst, device="cpu")
        with torch.no_grad():
            for layer in changed.model.layers:
                layer.attn.q_norm.weight.zero_()
                layer.attn.k_norm.weight.zero_()
    else:
        cfg = json.loads((dst / "config.json").read_text())
        edit(cfg)
        (dst / "config.json").write_text(json.dumps(cfg))
        changed = load_model(dst, device="cpu")
    with torch.no_grad():
        other = changed.model(_ids()).logits
    assert not torch.allclose(base, other, atol=1e-4), f"{control}: no effect on the logits"


def test_each_layer_reads_its_switches(loaded):
    assert [b.window for b in loaded("gemma2")[0].model.layers] == [4, None]
    assert [b.rope for b in loaded("gemma3")[0].model.layers] == ["local", "local", "global"]
    assert [b.rope for b in loaded("smollm3")[0].model.layers] == ["global", None, "global", None]
    assert [b.window for b in loaded("smollm3")[0].model.layers] == [None, 4, None, 4]
    assert loaded("pythia")[0].config.rotary_dim == 4 and loaded("pythia-sequential")[0].config.rotary_dim == 2
    assert loaded("phi3")[0].config.rotary_dim == 4 and loaded("phi3")[0].config.layer_types == ["sliding"] * 2
    cfg = loaded("gemma2")[0].config
    assert (cfg.attn_softcap, cfg.final_softcap, cfg.attn_scale) == (2.0, 3.0, 0.25)


def _legacy_gemma3(cfg):
    cfg.pop("rope_parameters")
    cfg.update(rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, rope_scaling=None)


def _legacy_pythia(cfg):
    cfg.pop("rope_parameters")
    cfg.update(rotary_pct=0.5, rotary_emb_base=10000)


def _legacy_phi3(cfg):
    cfg.pop("rope_parameters")
    cfg.update(rope_theta=10000.0, partial_rotary_factor=0.5, rope_scaling=None)


def _legacy_gemma2(cfg):
    cfg.pop("rope_parameters")
    cfg.pop("layer_types")  # the default pattern: even layers slide
    cfg.update(rope_theta=10000.0, hidden_act="gelu_pytorch_tanh")


@pytest.mark.parametrize("name, legacy", [("gemma3", _legacy_gemma3), ("pythia", _legacy_pythia),
                                          ("phi3", _legacy_phi3), ("gemma2", _legacy_gemma2)])
def test_older_config_spellings_read_the_same(saved, tmp_path, name, legacy):
    """transformers 4.4x-4.5x write RoPE fields flat (rope_theta, rope_local_base_freq,
    rotary_pct, ...) where 5.x writes rope_parameters: both read to the same model."""
    folder, _ = saved(name)
    dst = tmp_path / name
    shutil.copytree(folder, dst)
    cfg = json.loads((dst / "config.json").read_text())
    legacy(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    new, old = load_model(folder, device="cpu"), load_model(dst, device="cpu")
    assert old.config == new.config
    with torch.no_grad():
        assert torch.equal(old.model(_ids()).logits, new.model(_ids()).logits)


def test_phi3_longrope_is_refused_by_name(saved, tmp_path, capfd):
    from helpers import assert_one_line_error, run

    folder, _ = saved("phi3")
    dst = tmp_path / "phi3"
    shutil.copytree(folder, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0] * 2,
                              "long_factor": [1.0] * 2, "partial_rotary_factor": 0.5}
    (dst / "config.json").write_text(json.dumps(cfg))
    assert_one_line_error(*run(capfd, "info", "-m", dst)[::2], 1, "type 'longrope' is not supported")


def test_inspect_mask_shows_capped_scores(model_dir, capfd):
    """Gemma 2's --scores are the soft-capped ones: |s| < cap = 2 wherever a key is visible."""
    from helpers import LONG, run_json

    doc = run_json(capfd, "inspect-mask", "-m", model_dir("gemma2"), LONG, "--scores", "--layer", "1")
    visible = [s for row in doc["scores"] for s in row if s is not None]
    assert visible and max(abs(s) for s in visible) < 2.0
    assert max(abs(s) for s in visible) > 1.0  # and the cap is reached for, not idle


def test_pythia_buffers_of_old_exports_are_not_weights(saved, tmp_path):
    """Older Pythia uploads carry attention.bias / masked_bias (mask tables) and
    rotary_emb.inv_freq per layer: read past, listed as not loaded."""
    from safetensors.torch import load_file, save_file

    folder, _ = saved("pythia")
    dst = tmp_path / "pythia"
    shutil.copytree(folder, dst)
    state = load_file(dst / "model.safetensors")
    state["gpt_neox.layers.0.attention.bias"] = torch.ones(1, 1, 64, 64, dtype=torch.bool).tril()
    state["gpt_neox.layers.0.attention.masked_bias"] = torch.tensor(-1e9)
    state["gpt_neox.layers.1.attention.rotary_emb.inv_freq"] = torch.ones(2)
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    lm = load_model(dst, device="cpu")
    assert len(lm.plan.dropped) == 3 and lm.plan.not_loaded(lm.config)["tensors"] == 3
    with torch.no_grad():
        assert torch.equal(lm.model(_ids()).logits, load_model(folder, device="cpu").model(_ids()).logits)


def test_gemma_null_window_means_no_window():
    from attncli.model.config import ModelConfig
    from hf_factory import VARIANTS, hf_config

    cfg = hf_config("gemma2", **VARIANTS["gemma2"][1]).to_dict()
    cfg["sliding_window"] = None  # written out: not the default 4,096, but no window
    parsed = ModelConfig.from_hf(cfg)
    assert parsed.sliding_window is None and parsed.layer_types == ["full", "full"]
    del cfg["sliding_window"]  # absent: the family's default
    assert ModelConfig.from_hf(cfg).sliding_window == 4096
