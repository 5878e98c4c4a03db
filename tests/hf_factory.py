"""Tiny random Hugging Face checkpoints, built at test time with transformers (the
reference), in every layout attncli must load. Nothing here is committed as data.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

VOCAB = 128

BASE = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
            bos_token_id=1, eos_token_id=2)
GPT2 = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2)
GPT2_LIKE = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=64, bos_token_id=1, eos_token_id=2)

# name -> (model_type, config overrides). Each is one thing attncli must get right.
VARIANTS: dict[str, tuple[str, dict]] = {
    "gpt2": ("gpt2", dict(GPT2)),
    "gpt2-inverse-layer-scale": ("gpt2", dict(GPT2, scale_attn_by_inverse_layer_idx=True)),
    "llama": ("llama", dict(BASE)),
    "llama-mqa-tied": ("llama", dict(BASE, num_key_value_heads=1, tie_word_embeddings=True)),
    "llama-rope-linear": ("llama", dict(BASE, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})),
    "llama3-rope": ("llama", dict(BASE, max_position_embeddings=128, rope_parameters={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32, "rope_theta": 500000.0})),
    "mistral-window": ("mistral", dict(BASE, sliding_window=4)),
    "mistral-no-window": ("mistral", dict(BASE, sliding_window=None)),
    "qwen2": ("qwen2", dict(BASE, tie_word_embeddings=True)),
    "qwen2-sliding-layers": ("qwen2", dict(BASE, num_hidden_layers=3, use_sliding_window=True, sliding_window=4,
                                           max_window_layers=1)),
    "qwen3": ("qwen3", dict(BASE, head_dim=16)),  # head_dim != hidden / heads
    "olmo2": ("olmo2", dict(BASE)),  # norms after the sublayers, q/k norm over the whole projection
    # sandwich norms, (1 + w) RMSNorm, scaled embeddings, even layers sliding; weights large enough
    # (initializer_range) and caps small enough that both caps bite
    "gemma2": ("gemma2", dict(BASE, head_dim=8, query_pre_attn_scalar=16, sliding_window=4, initializer_range=0.2,
                              attn_logit_softcapping=2.0, final_logit_softcapping=3.0)),
    # per-head q/k norms, sliding layers on their own RoPE base (10k local, 1M global)
    "gemma3": ("gemma3_text", dict(BASE, num_hidden_layers=3, head_dim=8, query_pre_attn_scalar=8, sliding_window=4,
                                   layer_types=["sliding_attention", "sliding_attention", "full_attention"])),
    # parallel residual, per-head fused qkv, half the head dims rotating
    "pythia": ("gpt_neox", dict(GPT2_LIKE, rotary_pct=0.5)),
    "pythia-sequential": ("gpt_neox", dict(GPT2_LIKE, rotary_pct=0.25, use_parallel_residual=False)),
    # fused qkv_proj / gate_up_proj in the checkpoint, partial rotary, a window on every layer
    "phi3": ("phi3", dict(BASE, partial_rotary_factor=0.5, sliding_window=4, pad_token_id=0)),
    # layers 1 and 3 without RoPE, and windowed
    "smollm3": ("smollm3", dict(BASE, num_hidden_layers=4, no_rope_layer_interval=2, use_sliding_window=True,
                                sliding_window=4, pad_token_id=0)),
}


def hf_config(model_type: str, **overrides):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **overrides)


def build_hf_model(name: str, seed: int = 0):
    """The reference model of a variant, float32, eager attention, eval mode."""
    from transformers import AutoModelForCausalLM

    model_type, overrides = VARIANTS[name]
    cfg = hf_config(model_type, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    # Random norms and biases, so that a weight loaded into the wrong slot cannot hide.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname or "ln_" in pname or pname.endswith("bias"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if pname.endswith("weight") else 0.1 * torch.randn_like(p))
    return model.eval()


def save_variant(name: str, folder: Path, *, seed: int = 0, dtype: torch.dtype | None = None,
                 max_shard_size: str | None = None):
    """Save a variant to ``folder``; return the reference model as it was saved
    (after a round-trip through ``dtype`` if given, then back to float32)."""
    model = build_hf_model(name, seed)
    if dtype is not None:
        model = model.to(dtype)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(folder, **kwargs)
    return model.float().eval()


def make_gpt2_prefixless(folder: Path, seed: int = 0):
    """GPT-2 as the original upload stores it: no `transformer.` prefix, no lm_head
    (tied), and the attn.bias / attn.masked_bias buffers saved beside the weights."""
    from safetensors.torch import save_file

    model = build_hf_model("gpt2", seed)
    model.save_pretrained(folder)
    state = {k.removeprefix("transformer."): v.contiguous() for k, v in model.state_dict().items()
             if k != "lm_head.weight"}
    n = model.config.n_positions
    for i in range(model.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.uint8)).view(1, 1, n, n)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    for f in folder.glob("*.safetensors"):
        f.unlink()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return model


def rewrite_config(folder: Path, **changes) -> dict:
    """Edit config.json in place (None deletes a key); returns the new dict."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    path.write_text(json.dumps(cfg, indent=2))
    return cfg


def hf_logits(model, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reference logits (B, T, V), with position ids that skip left padding."""
    kwargs = {}
    if attention_mask is not None:
        pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        kwargs = dict(attention_mask=attention_mask, position_ids=pos)
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False, **kwargs).logits


# ---- text models: a tokenizer trained at test time, and a model whose vocab covers it ----
TEXT_VOCAB = 320  # model vocab; the byte-level BPE below uses at most 300 ids
TEXT_CORPUS = [
    "The cat sat on the mat. It was fluffy.", "The dog ran to the park. He was happy.",
    "A girl read a book in the café. She liked it.", "Naïve birds fly over Zürich and São Paulo.",
    "The children played all day 🐱 👍🏽 and then they slept.", "日本語 text and emoji 🇫🇷 too.",
] * 20


def save_tokenizer(folder: Path) -> None:
    """A byte-level BPE (GPT-2 style) with <|endoftext|> as id 0, trained here, now."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TEXT_CORPUS, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}))


def save_text_model(folder: Path, model_type: str = "llama", seed: int = 0, **overrides):
    """A random model of ``model_type`` with a tokenizer, ready for `attncli generate`."""
    from transformers import AutoModelForCausalLM

    if model_type == "gpt2":
        base = dict(GPT2, vocab_size=TEXT_VOCAB, n_positions=256, bos_token_id=0, eos_token_id=0)
    else:
        base = dict(BASE, vocab_size=TEXT_VOCAB, max_position_embeddings=256, bos_token_id=0, eos_token_id=0)
    cfg = hf_config(model_type, **{**base, **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    model.save_pretrained(folder)
    save_tokenizer(folder)
    return model


def save_gemma3_multimodal(folder: Path, seed: int = 0):
    """A tiny multimodal Gemma 3 (the gemma3 text variant plus a one-layer SigLIP tower),
    saved as transformers saves it; returns the reference, float32, eager, eval mode."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    vision = dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, image_size=16, patch_size=8)
    cfg = Gemma3Config(text_config=dict(VARIANTS["gemma3"][1]), vision_config=vision, mm_tokens_per_image=4,
                       image_token_index=127, boi_token_index=125, eoi_token_index=126)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(cfg).to(torch.float32)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname or pname.endswith("bias"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if pname.endswith("weight") else 0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    return model.eval()


def hf_greedy(ref, prompts, new, use_cache, pad_id=0):
    """transformers' generate(do_sample=False) on a left-padded batch; returns new tokens per row."""
    longest = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    ref.generation_config.eos_token_id = None  # compare the full length
    with torch.no_grad():
        out = ref.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                           do_sample=False, use_cache=use_cache, pad_token_id=pad_id)
    return out[:, longest:].tolist()
