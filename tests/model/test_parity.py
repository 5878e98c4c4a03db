"""Our logits equal transformers' (float32, assert_close defaults) for every
architecture and loading variant, both backends, prefill and cached decode."""

from __future__ import annotations

import pytest
import torch

from attncli.model.cache import KVCache
from attncli.checkpoint.load import load_model
from hf_factory import VARIANTS, VOCAB, hf_logits, make_gpt2_prefixless, rewrite_config, save_variant

BACKENDS = ["eager", "sdpa"]


def _batch(seed: int = 1, t: int = 12, pad: int = 5):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (2, t), generator=g)
    mask = torch.ones(2, t, dtype=torch.long)
    mask[1, :pad] = 0  # row 1 is left-padded: shorter prompt
    return ids, mask


def _assert_prefill(model, ref, backend, seed=1):
    ids, mask = _batch(seed)
    want = hf_logits(ref, ids, mask)
    got = model(ids, attention_mask=mask, backend=backend).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_prefill_logits_match_transformers(loaded, name, backend):
    lm, ref = loaded(name)
    _assert_prefill(lm.model, ref, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_cached_decode_logits_match_transformers(loaded, name, backend):
    """Prefill 8 tokens into the cache, then 4 single-token steps; each step's logits
    equal the reference's full forward at that position (padding included)."""
    lm, ref = loaded(name)
    ids, mask = _batch(seed=2, t=12, pad=3)
    want = hf_logits(ref, ids, mask)
    cache = KVCache(lm.config, batch=2, max_len=12, dtype=torch.float32, device="cpu")
    got = [lm.model(ids[:, :8], attention_mask=mask[:, :8], cache=cache, backend=backend).logits]
    for t in range(8, 12):
        got.append(lm.model(ids[:, t : t + 1], attention_mask=mask[:, t : t + 1], cache=cache, backend=backend).logits)
    got = torch.cat(got, dim=1)
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real])
    assert cache.length == 12


def test_sliding_window_is_really_applied(loaded, saved, tmp_path):
    """Control: the Mistral prompt is longer than the window, so dropping the window
    from config.json must change the logits (otherwise parity proves nothing)."""
    lm, ref = loaded("mistral-window")
    assert lm.config.sliding_window == 4
    folder, _ = saved("mistral-window")
    ids, mask = _batch()
    for f in folder.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    rewrite_config(tmp_path, sliding_window=None)
    unwindowed = load_model(tmp_path, device="cpu").model(ids, attention_mask=mask).logits
    windowed = lm.model(ids, attention_mask=mask).logits
    assert not torch.allclose(unwindowed[:, 6:], windowed[:, 6:])
    torch.testing.assert_close(unwindowed[:, :4], windowed[:, :4])  # inside the window: same


def test_windowed_decode_reads_only_the_window(loaded, monkeypatch):
    """A cached step of a windowed layer reads its W keys, not the whole cache, and (no
    padding) passes SDPA no mask: the cost is T x W, and the unmasked kernels may run."""
    import torch.nn.functional as F

    lm, _ = loaded("mistral-window")
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append((k.shape[2], attn_mask is None))
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    cache = KVCache(lm.config, batch=1, max_len=16, dtype=torch.float32, device="cpu")
    lm.model(torch.arange(3, 13)[None], cache=cache)
    seen.clear()
    lm.model(torch.tensor([[7]]), cache=cache)
    assert seen == [(4, True)] * lm.config.num_layers


def test_qwen2_window_only_on_sliding_layers(loaded):
    lm, _ = loaded("qwen2-sliding-layers")
    assert lm.config.layer_types == ["full", "sliding", "sliding"]
    assert [b.window for b in lm.model.layers] == [None, 4, 4]


# ---- loading variants ----
@pytest.mark.parametrize("backend", BACKENDS)
def test_gpt2_without_prefix_and_with_mask_buffers(tmp_path, backend):
    ref = make_gpt2_prefixless(tmp_path)
    lm = load_model(tmp_path, device="cpu")
    assert sorted(lm.plan.dropped)[:2] == ["h.0.attn.bias", "h.0.attn.masked_bias"]
    _assert_prefill(lm.model, ref, backend)


def test_sharded_checkpoint(tmp_path):
    ref = save_variant("llama", tmp_path, max_shard_size="30KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    lm = load_model(tmp_path, device="cpu")
    assert len(lm.plan.files) > 1
    _assert_prefill(lm.model, ref, "sdpa")


def test_single_safetensors_file_path(saved):
    folder, ref = saved("qwen3")
    lm = load_model(folder / "model.safetensors", device="cpu")
    _assert_prefill(lm.model, ref, "sdpa")


@pytest.mark.parametrize("name", ["llama-mqa-tied", "qwen2", "gpt2"])
def test_tied_head_shares_the_embedding(loaded, name):
    lm, _ = loaded(name)
    assert lm.config.tie_word_embeddings
    assert lm.model.lm_head.weight.data_ptr() == lm.model.embed.weight.data_ptr()


def test_untied_head_is_its_own_tensor(loaded):
    lm, ref = loaded("llama")
    assert lm.model.lm_head.weight.data_ptr() != lm.model.embed.weight.data_ptr()
    torch.testing.assert_close(lm.model.lm_head.weight, ref.lm_head.weight)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_checkpoint_loads_as_float32_on_cpu(tmp_path, backend):
    ref = save_variant("llama", tmp_path, dtype=torch.bfloat16)  # ref: the bf16 weights, back in float32
    lm = load_model(tmp_path, device="cpu")
    assert lm.config.dtype == "bfloat16" and lm.dtype == torch.float32
    _assert_prefill(lm.model, ref, backend)


def test_bfloat16_run_dtype_on_request(tmp_path):
    save_variant("llama", tmp_path, dtype=torch.bfloat16)
    lm = load_model(tmp_path, device="cpu", dtype="bfloat16")
    assert lm.model.embed.weight.dtype == torch.bfloat16
    ids, mask = _batch()
    assert torch.isfinite(lm.model(ids, attention_mask=mask).logits).all()


def test_pre_v5_rope_config_layout(tmp_path):
    """Older config.json files write rope_theta + rope_scaling instead of rope_parameters."""
    ref = save_variant("llama3-rope", tmp_path)
    params = dict(ref.config.rope_parameters)
    theta = params.pop("rope_theta")
    rewrite_config(tmp_path, rope_parameters=None, rope_theta=theta, rope_scaling=params)
    lm = load_model(tmp_path, device="cpu")
    assert lm.config.rope.kind == "llama3" and lm.config.rope.theta == theta
    _assert_prefill(lm.model, ref, "sdpa")


def test_older_torch_dtype_field(tmp_path):
    save_variant("llama", tmp_path, dtype=torch.bfloat16)
    cfg = rewrite_config(tmp_path, dtype=None, torch_dtype="bfloat16")
    assert "dtype" not in cfg
    assert load_model(tmp_path, device="cpu").config.dtype == "bfloat16"


def test_gemma3_multimodal_checkpoint_runs_its_text_decoder(tmp_path, capfd):
    """A multimodal gemma3 folder: the text decoder loads (weights under the language
    model's prefix), the vision tower is skipped and said so, logits equal the reference's."""
    from hf_factory import save_gemma3_multimodal
    from helpers import run

    ref = save_gemma3_multimodal(tmp_path)
    lm = load_model(tmp_path, device="cpu")
    assert lm.config.arch == "gemma3_text" and lm.config.rope_local is not None
    assert lm.plan.dropped and all(n.startswith(("vision_tower.", "multi_modal_projector.")) for n in lm.plan.dropped)
    ids, mask = _batch()
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).logits
    for backend in BACKENDS:
        got = lm.model(ids, attention_mask=mask, backend=backend).logits
        torch.testing.assert_close(got[mask.bool()], want[mask.bool()])
    code, out, _ = run(capfd, "info", "-m", tmp_path)
    assert code == 0 and "vision tower" in out


def test_a_probe_keep_function_holds_one_layers_scores_at_a_time(loaded):
    """probe=keep: each layer's (B, H, T, S) scores go to keep as they are made and are freed
    before the next layer makes its own (inspect-mask keeps one layer and head, --check
    judges each layer and drops it), so a long prompt does not hold L layers of scores."""
    import gc
    import weakref

    lm, _ = loaded("llama")
    alive: list = []
    kept_layers = []

    def keep(layer, probe):
        gc.collect()
        alive.append(sum(r() is not None for r in refs))
        refs.append(weakref.ref(probe.scores))
        kept_layers.append(layer)
        return probe.scores[:, 0, -1].clone() if layer == 1 else None  # a tiny piece of one layer

    refs: list = []
    with torch.inference_mode():
        out = lm.model(torch.arange(3, 40)[None], probe=keep)
        full = lm.model(torch.arange(3, 40)[None], probe=True)
    assert kept_layers == list(range(lm.config.num_layers))
    assert alive == [0] * lm.config.num_layers  # no earlier layer's scores still alive
    assert [p is None for p in out.probes] == [i != 1 for i in range(lm.config.num_layers)]
    torch.testing.assert_close(out.probes[1], full.probes[1].scores[:, 0, -1])
    torch.testing.assert_close(out.logits, full.logits)


@pytest.mark.parametrize("name", ["mistral-window", "qwen2-sliding-layers", "phi3", "smollm3", "gemma3"])
def test_long_windowed_prefill_runs_in_blocks_and_matches_transformers(loaded, name, monkeypatch):
    """A prompt of >= 4 windows (W = 4, T = 40, left-padded) runs SDPA a block of W queries
    at a time over at most 2W - 1 keys, with no (T, S) mask, and still equals the reference."""
    import torch.nn.functional as F

    lm, ref = loaded(name)
    ids, mask = _batch(seed=3, t=40, pad=7)
    want = hf_logits(ref, ids, mask)
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append((q.shape[2], k.shape[2]))
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    got = lm.model(ids, attention_mask=mask).logits
    real_rows = mask.bool()
    torch.testing.assert_close(got[real_rows], want[real_rows])
    windowed = [(t, s) for t, s in seen if t < 40]
    assert windowed and all(t <= 4 and s <= 2 * 4 - 1 for t, s in windowed)
