"""Weight storage and product form: each layout stores what it says, and every one of
them gives transformers' logits and greedy tokens (the split products with 2 threads)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attncli.model.cache import KVCache
from attncli.errors import BadInputError
from attncli.generate.loop import generate
from attncli.model import layout
from attncli.model.layout import LAYOUTS, is_transposed, policy, transposed_names
from attncli.checkpoint.load import load_model
from attncli.model.build import build_model
from attncli.model.transformer import Transformer
from attncli.model.presets import preset_config
from hf_factory import VOCAB, hf_logits

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("vendor,want", [("intel", "in_out"), ("amd", "split"), ("other", "split")])
def test_auto_follows_the_cpu_on_cpu_and_is_out_in_elsewhere(monkeypatch, vendor, want):
    monkeypatch.delenv("ATTNCLI_LAYOUT", raising=False)
    monkeypatch.setattr(layout, "cpu_vendor", lambda: vendor)
    assert policy(CPU) == want
    assert policy(CPU, dtype=torch.bfloat16) == "out_in"
    assert policy(CUDA) == "out_in"
    monkeypatch.setenv("ATTNCLI_LAYOUT", "by_shape")
    assert policy(CPU) == "by_shape"
    assert policy(CPU, "in_out") == "in_out"  # an explicit argument wins over the variable


def test_cpu_vendor_reads_proc_cpuinfo():
    assert layout.cpu_vendor() in ("intel", "amd", "other")


def test_unknown_layout_is_refused_by_name():
    with pytest.raises(BadInputError, match="unknown weight layout 'sideways'"):
        policy(CPU, "sideways")


def test_storage_rule_by_shape():
    cfg = preset_config("gpt2")
    with torch.device("meta"):
        model = Transformer(cfg)
    wide = {"layers.0.attn.qkv.weight", "layers.0.attn.o.weight", "layers.0.mlp.up.weight", "lm_head.weight"}
    for rule in ("split", "by_shape"):
        names = transposed_names(model, CPU, rule)
        assert wide <= names and "layers.0.mlp.down.weight" not in names
    assert "layers.0.mlp.down.weight" in transposed_names(model, CPU, "in_out")
    assert transposed_names(model, CPU, "out_in") == set()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["gpt2", "llama", "llama-mqa-tied"])
def test_each_layout_loads_what_it_says_and_matches_transformers(saved, name, layout, two_threads):
    folder, ref = saved(name)
    lm = load_model(folder, device="cpu", layout=layout)
    rule = policy(CPU, layout)
    for pname, p in lm.model.named_parameters():
        if p.dim() == 2 and pname != "embed.weight" and not pname.startswith("pos_embed"):
            out_f, in_f = p.shape
            want = rule == "in_out" or (rule in ("split", "by_shape") and out_f >= in_f)
            assert is_transposed(p) == want, pname
    assert {m.split_rows for m in lm.model.modules() if hasattr(m, "split_rows")} == {rule == "split"}
    if lm.config.tie_word_embeddings:
        assert lm.model.lm_head.weight is lm.model.embed.weight
    # prefill, then single-token cached steps (the split products), against transformers
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, VOCAB, (1, 10), generator=g)
    want = hf_logits(ref, ids, torch.ones_like(ids))
    cache = KVCache(lm.config, batch=1, max_len=10, dtype=torch.float32, device="cpu")
    got = [lm.model(ids[:, :6], cache=cache).logits]
    got += [lm.model(ids[:, t : t + 1], cache=cache).logits for t in range(6, 10)]
    torch.testing.assert_close(torch.cat(got, dim=1), want)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2", "qwen3", "mistral-window"])
def test_split_products_keep_greedy_tokens(loaded, name, use_cache, two_threads):
    lm, ref = loaded(name)
    prompt = [5, 17, 42, 9, 77, 31]
    ref.generation_config.eos_token_id = None
    ids = torch.tensor([prompt])
    want = ref.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, min_new_tokens=12,
                        do_sample=False, pad_token_id=0, use_cache=use_cache)[0, len(prompt):].tolist()
    gen = generate(lm.model, [prompt], max_new_tokens=12, use_cache=use_cache)
    for _ in gen:
        pass
    assert gen.rows[0].tokens == want


def test_random_model_gets_the_layout_too():
    cfg = dataclasses.replace(preset_config("gpt2"), num_layers=1, layer_types=None, vocab_size=256)
    model = build_model(cfg, device="cpu", dtype=torch.float32, random_weights=True)
    assert is_transposed(model.layers[0].attn.qkv.weight)
    split = policy(CPU) == "split"
    assert all(m.split_rows == split for m in model.modules() if hasattr(m, "split_rows"))


def test_the_cpu_thread_split_is_never_set_off_the_cpu(loaded, monkeypatch):
    """ATTNCLI_LAYOUT=split on CUDA must not cut cuBLAS products by the CPU's thread count."""
    from attncli.model.layout import set_split

    lm, _ = loaded("llama")
    monkeypatch.setenv("ATTNCLI_LAYOUT", "split")
    try:
        set_split(lm.model, torch.device("cuda"))
        assert not any(getattr(m, "split_rows", False) for m in lm.model.modules())
        set_split(lm.model, torch.device("cpu"))
        assert any(getattr(m, "split_rows", False) for m in lm.model.modules())
    finally:
        monkeypatch.delenv("ATTNCLI_LAYOUT")
        set_split(lm.model, torch.device("cpu"))  # back to what the fixture's load chose
