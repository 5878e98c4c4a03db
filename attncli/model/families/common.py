"""What the family modules share: a reader of config.json that records which fields a
family used (so that every other field can be refused by name), the spellings of
activations and RoPE settings, and the ``Family`` record that the registry keeps.

A family module turns config.json into ``ModelConfig`` switches (``parse``), turns a
``ModelConfig`` back into config.json (``to_hf``), names its checkpoint tensors
(``weights``) and may ship presets (``PRESETS``, ``PARAMETERS``). The transformer reads
switches, never a model_type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from attncli.errors import BadInputError, ModelLoadError
from attncli.model.config import ModelConfig, RopeConfig

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
HARMLESS = {
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

ROPE_TYPES = {"default", "linear", "llama3"}

# Switches that real config.json files carry switched off; on, they change the math.
OFF_ONLY = {
    "rope_interleaved": "interleaved (GPT-J style) rotary pairs are not implemented",
    "use_mrope": "multimodal rotary embedding is not implemented",
}


# ---- the registry's record of a family ----
@dataclass(frozen=True)
class Src:
    """One checkpoint tensor that (part of) one of our parameters is read from."""

    name: str  # checkpoint name, layer as {}
    transpose: bool = False  # GPT-2's Conv1D stores (in, out)
    # GPT-NeoX's fused query_key_value rows run (head, [q k v], D); ours run ([q k v], head, D)
    heads_interleaved: bool = False


WeightMap = dict[str, list[Src]]  # our parameter (layer as {}) -> the checkpoint tensors it is made of
# How a checkpoint spells the family's names: (old prefix, new prefix) pairs, the first that
# matches a name applies; () spells them as the weight map does.
Rename = tuple[tuple[str, str], ...]


def rename(name: str, layout: Rename) -> str:
    for old, new in layout:
        if name.startswith(old):
            return new + name[len(old):]
    return name


@dataclass(frozen=True)
class Family:
    arch: str  # ModelConfig.arch, and the model_type that to_hf writes
    hf_class: str  # config.json "architectures"
    parse: Callable[["Reader"], dict[str, Any]]  # config.json -> ModelConfig fields
    to_hf: Callable[[ModelConfig], dict[str, Any]]  # ModelConfig -> its config.json fields; refuses what it cannot say
    weights: WeightMap
    dropped: tuple[str, ...] = ()  # regexes of checkpoint tensors that are not weights (old mask/RoPE buffers)
    # the spellings checkpoints use (GPT-2's ``transformer.`` prefix, a multimodal wrapper's
    # language-model prefix): loading takes the one its embedding is found under; saving
    # writes the first
    layouts: tuple[Rename, ...] = ((),)
    aliases: tuple[str, ...] = ()  # other model_type strings read as this family
    model_type: str | None = None  # the model_type it reads, when not ``arch`` (a wrapper's config)
    skips: str = ""  # what the dropped tensors are, for the user (a vision tower)


# ---- reading config.json ----
class Reader:
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

    def raw(self, key: str, default: Any = None) -> Any:
        """The field as written: an explicit null stays None (where null means "off" and
        absence means the family's default, as for Gemma's soft-caps)."""
        self.used.add(key)
        return self.cfg.get(key, default)

    def refuse_if(self, key: str, bad: bool, why: str) -> None:
        self.used.add(key)
        if bad:
            raise ModelLoadError(f"config.json field {key!r} = {self.cfg.get(key)!r} is not supported: {why}")


def activation(r: Reader, key: str) -> str:
    name = r.get(key, "silu")
    if name not in ACTIVATIONS:
        raise ModelLoadError(f"config.json field {key!r} = {name!r} is not supported; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def read_rope(r: Reader, max_pos: int, *, partial: bool = False, theta_key: str = "rope_theta",
              default_theta: float = 10000.0) -> RopeConfig:
    """The RoPE settings. transformers >= 5 writes `rope_parameters` (theta inside); older
    files write `rope_theta` beside an optional `rope_scaling`. Read both. ``partial``: the
    family reads partial_rotary_factor itself (see ``rotary_dims``); otherwise it is refused."""
    params = dict(r.get("rope_parameters", {}) or {})
    scaling = dict(r.get("rope_scaling", None) or {})
    if "type" in scaling:  # the oldest spelling of rope_type
        scaling["rope_type"] = scaling.pop("type")
    params.update(scaling)
    if not partial and (params.get("partial_rotary_factor", 1.0) != 1.0 or r.cfg.get("partial_rotary_factor", 1.0) != 1.0):
        raise ModelLoadError("config.json partial_rotary_factor != 1 is not supported")
    return rope_from(params, max_pos, "rope_scaling" if scaling else "rope_parameters",
                     theta=r.get(theta_key, default_theta))


def rotary_dims(r: Reader, head_dim: int, *, key: str = "partial_rotary_factor", default: float = 1.0) -> int:
    """How many dims of each head rotate: int(D * factor), the factor written beside the
    other RoPE fields (5.x: inside rope_parameters) or, older, as ``key``."""
    params = r.get("rope_parameters", {}) or {}
    factor = params.get("partial_rotary_factor", r.get(key, default))
    return int(head_dim * float(factor))


def rope_from(params: dict[str, Any], max_pos: int, field_name: str, *, theta: float) -> RopeConfig:
    """One RopeConfig from a rope_parameters-style dict (``theta`` where it names none)."""
    theta = params.get("rope_theta", theta)
    kind = params.get("rope_type", "default")
    if kind not in ROPE_TYPES:
        raise ModelLoadError(
            f"config.json {field_name} type {kind!r} is not supported; supported: {', '.join(sorted(ROPE_TYPES))}"
        )
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


def checkpoint_dtype(cfg: dict[str, Any]) -> str | None:
    value = cfg.get("dtype") or cfg.get("torch_dtype")
    if value is None:
        return None
    value = str(value).replace("torch.", "")
    return {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32", "fp32": "float32"}.get(
        value, value
    )


def id_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def first_id(value: Any) -> int | None:
    ids = id_list(value)
    return ids[0] if ids else None


# ---- writing config.json ----
def rope_to_hf(rope: RopeConfig) -> dict[str, Any]:
    # transformers >= 5 reads rope_parameters; older releases read rope_theta (and
    # rope_scaling, which read_rope merges into rope_parameters when both are present).
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


def plain_wants(c: ModelConfig, **more: Any) -> dict[str, Any]:
    """The switches of later families, as a family without them must leave them, plus
    ``more`` (a family's own fixed fields)."""
    want = dict(norm_placement="pre", norm_style="llama", parallel_residual=False, embed_scale=None,
                attn_softcap=None, final_softcap=None, rotary_dim=c.head_dim, rope_local=None, nope_layers=[],
                qk_norm_scope="head", rope_in_float32=False)
    return {**want, **more}


def shape_to_hf(c: ModelConfig, *, act_key: str, acts: dict[str, str], kv_heads: bool = True) -> dict[str, Any]:
    """The shape fields most config.json files spell alike (``kv_heads``: the file states
    num_key_value_heads and head_dim)."""
    out: dict[str, Any] = {
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
    }
    if kv_heads:
        out.update(num_key_value_heads=c.num_kv_heads, head_dim=c.head_dim)
    out[act_key] = acts[c.act]
    out["max_position_embeddings"] = c.max_position_embeddings
    return out


def layer_pairs(layer: str, pairs: list[tuple[str, str]], parts: tuple[str, ...] = ("weight", "bias"),
                **how: Any) -> WeightMap:
    """Weight-map entries for modules that map one to one: ours -> ``layer`` + theirs, for
    each of ``parts``; ``how``: Src options (transpose, heads_interleaved)."""
    return {f"layers.{{}}.{ours}.{part}": [Src(f"{layer}{theirs}.{part}", **how)]
            for ours, theirs in pairs for part in parts}


def refuse_inexpressible(c: ModelConfig, want: dict[str, Any], *, scales: set[float], acts: dict[str, str],
                         extra: list[str] = ()) -> None:
    """Raise if ``c`` differs from what its family's config.json can say: ``want`` are the
    fields it fixes, ``scales`` the attention scales it can state, ``acts`` its activations."""
    bad = [f"{k}={getattr(c, k)!r} (needs {v!r})" for k, v in want.items() if getattr(c, k) != v]
    if c.attn_scale not in scales:
        bad.append(f"attn_scale={c.attn_scale!r}")
    if c.act not in acts:
        bad.append(f"act={c.act!r}")
    bad.extend(extra)
    if bad:
        raise BadInputError(f"cannot write a {c.arch} config.json for this model: {'; '.join(bad)}")
