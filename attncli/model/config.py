"""ModelConfig: the one description of a decoder that the model code reads.

``ModelConfig.from_hf(config_json)`` maps a Hugging Face config.json onto it through the
family module its ``model_type`` names (attncli.model.families). Every field of
config.json is either used, known to be harmless (metadata, training-only knobs), or
refused with an error naming it: a field that would change the math is never silently
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from attncli.errors import ModelLoadError


@dataclass(frozen=True)
class RopeConfig:
    theta: float = 10000.0
    kind: str = "default"  # "default" | "linear" | "llama3"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int | None = None


@dataclass
class ModelConfig:
    arch: str
    vocab_size: int
    hidden_size: int  # C
    num_layers: int
    num_heads: int  # H
    intermediate_size: int
    max_position_embeddings: int
    num_kv_heads: int | None = None  # Hkv; None -> H
    head_dim: int | None = None  # D; None -> C // H
    norm: str = "rmsnorm"  # "rmsnorm" | "layernorm"
    norm_eps: float = 1e-6
    mlp: str = "gated"  # "gated" (SwiGLU-style gate * up) | "plain" (up, act, down)
    act: str = "silu"
    pos: str = "rope"  # "rope" | "learned"
    rope: RopeConfig | None = field(default_factory=RopeConfig)
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False
    qk_norm: bool = False
    qk_norm_scope: str = "head"  # "head" (Qwen3: per head, D wide) | "projection" (OLMo 2: all of q / k, before the head split)
    # Where the norms sit: "pre" before each sublayer; "post" (OLMo 2) on each sublayer's
    # output, before the residual add; "sandwich" (Gemma 2/3) both.
    norm_placement: str = "pre"
    # How RMSNorm scales and rounds (the same math in float32; reduced precision rounds where
    # the reference does): "llama" w * x.to(dtype); "float32" (OLMo 2) (w * x) in float32,
    # then cast; "gemma" (1 + w) * x in float32, then cast (the weight stores w - 1).
    norm_style: str = "llama"
    parallel_residual: bool = False  # GPT-NeoX: h + attn(ln1(h)) + mlp(ln2(h))
    embed_scale: float | None = None  # Gemma: embeddings x sqrt(C), the factor cast to the run dtype
    attn_softcap: float | None = None  # scores -> cap * tanh(scores / cap), before the mask (Gemma 2)
    final_softcap: float | None = None  # the same on the logits
    rotary_dim: int | None = None  # R: the first R dims of each head rotate (partial rotary); None -> D
    rope_local: RopeConfig | None = None  # sliding layers' own RoPE (Gemma 3's local base); None -> rope
    nope_layers: list[int] = field(default_factory=list)  # layers with no position encoding (SmolLM3)
    rope_in_float32: bool = False  # OLMo 2 rotates q/k in float32 and rounds once; others in the run dtype
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    layer_types: list[str] | None = None  # per layer: "full" | "sliding" | "chunked"
    chunk_size: int | None = None  # C of "chunked" layers: keys in the query's own chunk of C positions (Llama 4)
    attn_scale: float | None = None  # None -> 1/sqrt(D)
    scale_by_inverse_layer_idx: bool = False  # GPT-2 option: scores /= (layer + 1)
    bos_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)
    pad_token_id: int | None = None
    dtype: str | None = None  # the checkpoint's dtype, as config.json says

    def __post_init__(self) -> None:
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ModelLoadError(
                    f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_heads}"
                )
            self.head_dim = self.hidden_size // self.num_heads
        if self.num_heads % self.num_kv_heads:
            raise ModelLoadError(
                f"num_attention_heads {self.num_heads} is not a multiple of num_key_value_heads {self.num_kv_heads}"
            )
        if self.attn_scale is None:
            self.attn_scale = self.head_dim**-0.5
        if self.layer_types is None:
            kind = "sliding" if self.sliding_window is not None else "full"
            self.layer_types = [kind] * self.num_layers
        if len(self.layer_types) != self.num_layers:
            raise ModelLoadError(
                f"layer_types has {len(self.layer_types)} entries for {self.num_layers} layers"
            )
        if "sliding" in self.layer_types and not self.sliding_window:
            raise ModelLoadError("layer_types asks for sliding layers but sliding_window is not set")
        if "chunked" in self.layer_types and not self.chunk_size:
            raise ModelLoadError("layer_types asks for chunked layers but the chunk size is not set")
        bad = sorted(set(self.layer_types) - {"full", "sliding", "chunked"})
        if bad:
            raise ModelLoadError(f"unknown layer type(s) {', '.join(bad)}")
        if self.qk_norm_scope not in ("head", "projection"):
            raise ModelLoadError(f"qk_norm_scope must be 'head' or 'projection', got {self.qk_norm_scope!r}")
        if self.norm_placement not in ("pre", "post", "sandwich"):
            raise ModelLoadError(f"norm_placement must be pre, post or sandwich, got {self.norm_placement!r}")
        if self.norm_style not in ("llama", "float32", "gemma"):
            raise ModelLoadError(f"norm_style must be llama, float32 or gemma, got {self.norm_style!r}")
        if self.rotary_dim is None:
            self.rotary_dim = self.head_dim
        if self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.head_dim:
            raise ModelLoadError(f"rotary dims {self.rotary_dim} must be even and in 1..head_dim {self.head_dim}")
        bad = [i for i in self.nope_layers if not 0 <= i < self.num_layers]
        if bad:
            raise ModelLoadError(f"no-RoPE layer(s) {bad} outside 0..{self.num_layers - 1}")
        for name in ("attn_softcap", "final_softcap"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ModelLoadError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ModelLoadError(f"sliding_window must be >= 1, got {self.sliding_window}")

    # ---- derived facts, used by the model, the cache and `info` ----
    @property
    def kv_groups(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def has_sliding_layers(self) -> bool:
        return "sliding" in self.layer_types

    @property
    def context_length(self) -> int:
        return self.max_position_embeddings

    @property
    def fully_windowed(self) -> bool:
        """Every layer attends at most W keys with relative positions (Mistral): such a
        model is not bounded by its context length the way learned positions or
        full-attention RoPE layers are."""
        return self.pos == "rope" and all(kind == "sliding" for kind in self.layer_types)

    def window_of(self, layer: int) -> int | None:
        return self.sliding_window if self.layer_types[layer] == "sliding" else None

    def chunk_of(self, layer: int) -> int | None:
        return self.chunk_size if self.layer_types[layer] == "chunked" else None

    def rope_of(self, layer: int) -> str | None:
        """Which rotary table a layer applies: "global", "local" (a sliding layer with its own
        base) or None (learned positions, or a no-RoPE layer)."""
        if self.pos != "rope" or layer in self.nope_layers:
            return None
        return "local" if self.rope_local is not None and self.layer_types[layer] == "sliding" else "global"

    def with_(self, **changes: Any) -> "ModelConfig":
        return replace(self, **changes)

    def windowed_everywhere(self, window: int) -> "ModelConfig":
        """The same model with every layer sliding, window ``window`` (weights unchanged):
        profile --window's knob."""
        return replace(self, sliding_window=window, layer_types=["sliding"] * self.num_layers, chunk_size=None)

    # ---- Hugging Face config.json, read and written by the family modules ----
    @classmethod
    def from_hf(cls, cfg: dict[str, Any], generation_config: dict[str, Any] | None = None) -> "ModelConfig":
        """The config of a Hugging Face config.json (and generation_config.json), read by
        the family its ``model_type`` names: attncli.model.families."""
        from attncli.model.families import read_config

        return read_config(cfg, generation_config)

    def to_hf(self) -> dict[str, Any]:
        """A config.json dict that ``from_hf`` reads back to an equal ModelConfig and
        that transformers builds the same model from.

        A config that its model_type cannot express (a bias Llama has no switch for,
        an attention scale GPT-2 cannot state) is refused, naming what does not fit:
        writing a file that describes some other model would be worse.
        """
        from attncli.model.families import write_config

        return write_config(self)
