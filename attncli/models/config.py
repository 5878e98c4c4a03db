"""ModelConfig: the one description of a decoder that the model code reads.

``ModelConfig.from_hf(config_json)`` maps a Hugging Face config.json onto it, keyed on
``model_type``. Every field of config.json is either used, known to be harmless
(metadata, training-only knobs), or refused with an error naming it: a field that
would change the math is never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from attncli.errors import BadInputError, ModelLoadError

# Architectures implemented, and the model_type strings that mean the same layout.
ALIASES: dict[str, str] = {
    "gpt2": "gpt2",
    "llama": "llama",
    "mistral": "mistral",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
}
SUPPORTED = sorted(set(ALIASES))

ACTIVATIONS = {
    # config.json name -> ours (the math, not the implementation class)
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}

# Fields that never change the forward pass at inference time.
_HARMLESS = {
    "architectures", "model_type", "transformers_version", "_name_or_path", "name_or_path",
    "dtype", "torch_dtype", "use_cache", "initializer_range", "initializer_factor",
    "output_hidden_states", "output_attentions", "return_dict", "chunk_size_feed_forward",
    "is_encoder_decoder", "problem_type", "id2label", "label2id", "tokenizer_class",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop",
    "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
    "summary_first_dropout", "task_specific_params", "n_ctx", "output_past",
    "pretraining_tp",  # an old tensor-parallel emulation of the same products
    "tie_word_embeddings", "is_decoder",
    "auto_map", "finetuning_task", "prefix", "task", "num_labels", "torchscript",
    "tf_legacy_loss", "use_bfloat16", "pruned_heads", "cross_attention_hidden_size",
    "add_cross_attention", "tie_encoder_decoder", "bad_words_ids", "typical_p",
    "temperature", "top_k", "top_p", "do_sample", "max_length", "min_length",
    "num_beams", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "reorder_and_upcast_attn",  # GPT-2: precision of the same scores; we softmax in float32 anyway
    "is_llama_config", "n_special", "predict_special_tokens",  # seen in real SmolLM2 / gpt2-medium files
    "use_return_dict", "keys_to_ignore_at_inference",
}

_ROPE_TYPES = {"default", "linear", "llama3"}

# Switches that real config.json files carry switched off; on, they change the math.
_OFF_ONLY = {
    "rope_interleaved": "interleaved (GPT-J style) rotary pairs are not implemented",
    "use_mrope": "multimodal rotary embedding is not implemented",
}


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
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    layer_types: list[str] | None = None  # per layer: "full" | "sliding"
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

    def with_(self, **changes: Any) -> "ModelConfig":
        return replace(self, **changes)

    # ---- construction from Hugging Face config.json ----
    @classmethod
    def from_hf(cls, cfg: dict[str, Any], generation_config: dict[str, Any] | None = None) -> "ModelConfig":
        model_type = cfg.get("model_type")
        if not model_type:
            raise ModelLoadError("config.json has no model_type; supported: " + ", ".join(SUPPORTED))
        arch = ALIASES.get(model_type)
        if arch is None:
            raise ModelLoadError(
                f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED)}"
            )
        parse = _PARSERS[arch]
        used: set[str] = set()
        reader = _Reader(cfg, used)
        for key, why in _OFF_ONLY.items():
            reader.refuse_if(key, bool(cfg.get(key)), why)
        kwargs = parse(reader)
        unknown = sorted(k for k in cfg if k not in used and k not in _HARMLESS)
        if unknown:
            raise ModelLoadError(
                f"config.json field(s) not implemented by attncli for {model_type}: {', '.join(unknown)}"
            )
        gen = generation_config or {}
        eos = gen.get("eos_token_id", cfg.get("eos_token_id"))
        bos = gen.get("bos_token_id", cfg.get("bos_token_id"))
        pad = gen.get("pad_token_id", cfg.get("pad_token_id"))
        return cls(
            arch=arch,
            bos_token_id=_first_id(bos),
            eos_token_ids=_id_list(eos),
            pad_token_id=_first_id(pad),
            dtype=_checkpoint_dtype(cfg),
            **kwargs,
        )

    # ---- back to Hugging Face config.json: the inverse of from_hf ----
    def to_hf(self) -> dict[str, Any]:
        """A config.json dict that ``from_hf`` reads back to an equal ModelConfig and
        that transformers builds the same model from.

        A config that its model_type cannot express (a bias Llama has no switch for,
        an attention scale GPT-2 cannot state) is refused, naming what does not fit:
        writing a file that describes some other model would be worse.
        """
        _check_expressible(self)
        out: dict[str, Any] = {
            "architectures": [_HF_CLASSES[self.arch]],
            "model_type": self.arch,
            **_TO_HF[self.arch](self),
            "tie_word_embeddings": self.tie_word_embeddings,
        }
        if self.bos_token_id is not None:
            out["bos_token_id"] = self.bos_token_id
        if self.eos_token_ids:
            eos = self.eos_token_ids
            out["eos_token_id"] = eos[0] if len(eos) == 1 else list(eos)
        if self.pad_token_id is not None:
            out["pad_token_id"] = self.pad_token_id
        if self.dtype is not None:
            out["dtype"] = self.dtype
        return out


class _Reader:
    """Reads config.json fields and remembers which ones the parser consumed."""

    def __init__(self, cfg: dict[str, Any], used: set[str]):
        self.cfg, self.used = cfg, used

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        value = self.cfg.get(key, default)
        return default if value is None else value

    def need(self, key: str) -> Any:
        self.used.add(key)
        if self.cfg.get(key) is None:
            raise ModelLoadError(f"config.json is missing the required field {key!r}")
        return self.cfg[key]

    def refuse_if(self, key: str, bad: bool, why: str) -> None:
        self.used.add(key)
        if bad:
            raise ModelLoadError(f"config.json field {key!r} = {self.cfg.get(key)!r} is not supported: {why}")


def _activation(r: _Reader, key: str) -> str:
    name = r.get(key, "silu")
    if name not in ACTIVATIONS:
        raise ModelLoadError(f"config.json field {key!r} = {name!r} is not supported; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _parse_gpt2(r: _Reader) -> dict[str, Any]:
    r.refuse_if("add_cross_attention", bool(r.cfg.get("add_cross_attention")), "cross-attention is for encoder-decoders")
    hidden = r.need("n_embd")
    scale = r.get("scale_attn_weights", True)
    return dict(
        vocab_size=r.need("vocab_size"),
        hidden_size=hidden,
        num_layers=r.need("n_layer"),
        num_heads=r.need("n_head"),
        intermediate_size=r.get("n_inner") or 4 * hidden,
        max_position_embeddings=r.get("n_positions", r.cfg.get("n_ctx", 1024)),
        norm="layernorm",
        norm_bias=True,
        norm_eps=r.get("layer_norm_epsilon", 1e-5),
        mlp="plain",
        act=_activation(r, "activation_function"),
        pos="learned",
        rope=None,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        tie_word_embeddings=r.get("tie_word_embeddings", True),
        attn_scale=None if scale else 1.0,
        scale_by_inverse_layer_idx=bool(r.get("scale_attn_by_inverse_layer_idx", False)),
    )


def _rope(r: _Reader, max_pos: int) -> RopeConfig:
    # transformers >= 5 writes `rope_parameters` (theta inside); older files write
    # `rope_theta` beside an optional `rope_scaling`. Read both.
    params = dict(r.get("rope_parameters", {}) or {})
    scaling = dict(r.get("rope_scaling", None) or {})
    if "type" in scaling:  # the oldest spelling of rope_type
        scaling["rope_type"] = scaling.pop("type")
    params.update(scaling)
    theta = params.get("rope_theta", r.get("rope_theta", 10000.0))
    kind = params.get("rope_type", "default")
    field_name = "rope_scaling" if scaling else "rope_parameters"
    if kind not in _ROPE_TYPES:
        raise ModelLoadError(
            f"config.json {field_name} type {kind!r} is not supported; supported: {', '.join(sorted(_ROPE_TYPES))}"
        )
    if params.get("partial_rotary_factor", 1.0) != 1.0 or r.cfg.get("partial_rotary_factor", 1.0) != 1.0:
        raise ModelLoadError("config.json partial_rotary_factor != 1 is not supported")
    if kind == "default":
        return RopeConfig(theta=float(theta))
    factor = float(params.get("factor", 1.0))
    if kind == "linear":
        return RopeConfig(theta=float(theta), kind="linear", factor=factor)
    return RopeConfig(
        theta=float(theta),
        kind="llama3",
        factor=factor,
        low_freq_factor=float(params["low_freq_factor"]),
        high_freq_factor=float(params["high_freq_factor"]),
        original_max_position_embeddings=int(params.get("original_max_position_embeddings", max_pos)),
    )


def _parse_llama_family(r: _Reader, *, arch: str) -> dict[str, Any]:
    max_pos = r.get("max_position_embeddings", 2048)
    num_layers = r.need("num_hidden_layers")
    out: dict[str, Any] = dict(
        vocab_size=r.need("vocab_size"),
        hidden_size=r.need("hidden_size"),
        num_layers=num_layers,
        num_heads=r.need("num_attention_heads"),
        num_kv_heads=r.get("num_key_value_heads", None),
        head_dim=r.get("head_dim", None),
        intermediate_size=r.need("intermediate_size"),
        max_position_embeddings=max_pos,
        norm="rmsnorm",
        norm_eps=r.get("rms_norm_eps", 1e-6),
        mlp="gated",
        act=_activation(r, "hidden_act"),
        pos="rope",
        rope=_rope(r, max_pos),
        tie_word_embeddings=r.get("tie_word_embeddings", False),
    )
    if arch in ("llama", "qwen3"):
        out["qkv_bias"] = out["o_bias"] = bool(r.get("attention_bias", False))
    if arch == "llama":
        out["mlp_bias"] = bool(r.get("mlp_bias", False))
    if arch == "qwen2":
        out["qkv_bias"] = True  # Qwen2 always has q/k/v biases and no o bias
    if arch == "qwen3":
        out["qk_norm"] = True
    if arch == "mistral":
        window = r.get("sliding_window", None)
        r.refuse_if("layer_types", "layer_types" in r.cfg and r.cfg["layer_types"] is not None,
                    "Mistral with per-layer types is another architecture (Ministral)")
        out["sliding_window"] = window
    if arch in ("qwen2", "qwen3"):
        out.update(_qwen_window(r, num_layers))
    if arch == "llama":
        r.refuse_if("sliding_window", r.cfg.get("sliding_window") is not None, "Llama has no sliding window")
    return out


def _qwen_window(r: _Reader, num_layers: int) -> dict[str, Any]:
    # Qwen configs often carry sliding_window=32768 with use_sliding_window=false: as in
    # the reference, the window exists only when the switch is on, and then applies to
    # the layers that layer_types (or, without it, max_window_layers) marks as sliding.
    use = bool(r.get("use_sliding_window", False))
    configured = r.get("sliding_window", None)
    window = configured if use else None
    first = r.get("max_window_layers", num_layers)
    types = r.get("layer_types", None)
    if types is not None:
        names = {"full_attention": "full", "sliding_attention": "sliding"}
        bad = sorted({t for t in types if t not in names})
        if bad:
            raise ModelLoadError(f"config.json layer_types has unsupported kind(s): {', '.join(bad)}")
        layer_types = [names[t] for t in types]
    else:
        layer_types = ["sliding" if i >= first else "full" for i in range(num_layers)]
    if window is None or "sliding" not in layer_types:
        return {"sliding_window": None, "layer_types": ["full"] * len(layer_types)}
    return {"sliding_window": window, "layer_types": layer_types}


_PARSERS = {
    "gpt2": _parse_gpt2,
    "llama": lambda r: _parse_llama_family(r, arch="llama"),
    "mistral": lambda r: _parse_llama_family(r, arch="mistral"),
    "qwen2": lambda r: _parse_llama_family(r, arch="qwen2"),
    "qwen3": lambda r: _parse_llama_family(r, arch="qwen3"),
}


def _checkpoint_dtype(cfg: dict[str, Any]) -> str | None:
    value = cfg.get("dtype") or cfg.get("torch_dtype")
    if value is None:
        return None
    value = str(value).replace("torch.", "")
    return {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32", "fp32": "float32"}.get(
        value, value
    )


def _id_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def _first_id(value: Any) -> int | None:
    ids = _id_list(value)
    return ids[0] if ids else None


# ---- ModelConfig -> config.json (used by ModelConfig.to_hf) ----
_HF_CLASSES = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
# ours -> the config.json spelling each family uses for it
_HF_ACTIVATIONS = {
    "gpt2": {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"},
    "llama": {"silu": "silu", "gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu", "relu": "relu"},
}


def _check_expressible(c: ModelConfig) -> None:
    """Raise if ``c`` is not a model that its arch's config.json can describe."""
    family = "gpt2" if c.arch == "gpt2" else "llama"
    if c.arch == "gpt2":
        want = dict(norm="layernorm", norm_bias=True, mlp="plain", pos="learned", qkv_bias=True,
                    o_bias=True, mlp_bias=True, qk_norm=False, sliding_window=None)
        scales = {c.head_dim**-0.5, 1.0}  # scale_attn_weights true / false
    else:
        want = dict(norm="rmsnorm", norm_bias=False, mlp="gated", pos="rope", scale_by_inverse_layer_idx=False,
                    qk_norm=c.arch == "qwen3")
        if c.arch in ("llama", "qwen3"):
            want["o_bias"] = c.qkv_bias  # one switch, attention_bias, for both
        else:
            want.update(qkv_bias=c.arch == "qwen2", o_bias=False)
        if c.arch != "llama":
            want["mlp_bias"] = False
        if c.arch == "llama":
            want["sliding_window"] = None
        scales = {c.head_dim**-0.5}
    bad = [f"{k}={getattr(c, k)!r} (needs {v!r})" for k, v in want.items() if getattr(c, k) != v]
    if c.attn_scale not in scales:
        bad.append(f"attn_scale={c.attn_scale!r}")
    if c.act not in _HF_ACTIVATIONS[family]:
        bad.append(f"act={c.act!r}")
    if c.arch == "mistral" and c.layer_types != (["sliding"] * c.num_layers if c.sliding_window else ["full"] * c.num_layers):
        bad.append("per-layer layer_types (Mistral applies its window to every layer)")
    if bad:
        raise BadInputError(f"cannot write a {c.arch} config.json for this model: {'; '.join(bad)}")


def _gpt2_to_hf(c: ModelConfig) -> dict[str, Any]:
    return {
        "vocab_size": c.vocab_size,
        "n_embd": c.hidden_size,
        "n_layer": c.num_layers,
        "n_head": c.num_heads,
        "n_inner": c.intermediate_size,
        "n_positions": c.max_position_embeddings,
        "layer_norm_epsilon": c.norm_eps,
        "activation_function": _HF_ACTIVATIONS["gpt2"][c.act],
        "scale_attn_weights": c.attn_scale == c.head_dim**-0.5,
        "scale_attn_by_inverse_layer_idx": c.scale_by_inverse_layer_idx,
    }


def _rope_to_hf(rope: RopeConfig) -> dict[str, Any]:
    # transformers >= 5 reads rope_parameters; older releases read rope_theta (and
    # rope_scaling, which from_hf merges into rope_parameters when both are present).
    params: dict[str, Any] = {"rope_type": rope.kind, "rope_theta": rope.theta}
    if rope.kind in ("linear", "llama3"):
        params["factor"] = rope.factor
    if rope.kind == "llama3":
        params.update(low_freq_factor=rope.low_freq_factor, high_freq_factor=rope.high_freq_factor,
                      original_max_position_embeddings=rope.original_max_position_embeddings)
    out: dict[str, Any] = {"rope_theta": rope.theta, "rope_parameters": params}
    if rope.kind != "default":
        out["rope_scaling"] = dict(params)
    return out


def _llama_family_to_hf(c: ModelConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "hidden_act": _HF_ACTIVATIONS["llama"][c.act],
        "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": c.norm_eps,
        **_rope_to_hf(c.rope or RopeConfig()),
    }
    if c.arch in ("llama", "qwen3"):
        out["attention_bias"] = c.qkv_bias
    if c.arch == "llama":
        out["mlp_bias"] = c.mlp_bias
    if c.arch == "mistral":
        out["sliding_window"] = c.sliding_window
    if c.arch in ("qwen2", "qwen3"):
        names = {"full": "full_attention", "sliding": "sliding_attention"}
        out.update(
            use_sliding_window=c.has_sliding_layers,
            sliding_window=c.sliding_window,
            max_window_layers=c.num_layers,  # superseded by layer_types, which is explicit
            layer_types=[names[t] for t in c.layer_types],
        )
    return out


_TO_HF = {
    "gpt2": _gpt2_to_hf,
    "llama": _llama_family_to_hf,
    "mistral": _llama_family_to_hf,
    "qwen2": _llama_family_to_hf,
    "qwen3": _llama_family_to_hf,
}
