"""The registry of model families: one module per family, each listing its ``FAMILIES``
(config.json reading, Hugging Face weight names, export) and the real models' shapes it
ships as ``PRESETS`` (with their published ``PARAMETERS``).

Adding a model_type is one new module here, its name in ``MODULES``, and its tests.
``read_config`` / ``write_config`` are ``ModelConfig.from_hf`` / ``to_hf``: every field
of config.json is used by the family, known to be harmless, or refused by name.
"""

from __future__ import annotations

import importlib
from typing import Any

from attncli.errors import ModelLoadError
from attncli.model.config import ModelConfig
from attncli.model.families.common import HARMLESS, OFF_ONLY, Family, Reader, checkpoint_dtype, first_id, id_list

MODULES = ("gpt2", "llama", "qwen", "olmo2", "gemma", "gpt_neox", "phi3", "smollm3")

BY_ARCH: dict[str, Family] = {}
BY_MODEL_TYPE: dict[str, Family] = {}
for _name in MODULES:
    for _family in importlib.import_module(f"{__name__}.{_name}").FAMILIES:
        BY_ARCH.setdefault(_family.arch, _family)  # a wrapper's reader (model_type set) shares its arch
        for _model_type in (_family.model_type or _family.arch, *_family.aliases):
            BY_MODEL_TYPE[_model_type] = _family
SUPPORTED = sorted(BY_MODEL_TYPE)


def family(arch: str) -> Family:
    """The family of a ModelConfig's ``arch``."""
    return BY_ARCH[arch]


def read_config(cfg: dict[str, Any], generation_config: dict[str, Any] | None = None) -> ModelConfig:
    model_type = cfg.get("model_type")
    if not model_type:
        raise ModelLoadError("config.json has no model_type; supported: " + ", ".join(SUPPORTED))
    fam = BY_MODEL_TYPE.get(model_type)
    if fam is None:
        raise ModelLoadError(f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED)}")
    used: set[str] = set()
    reader = Reader(cfg, used)
    for key, why in OFF_ONLY.items():
        reader.refuse_if(key, bool(cfg.get(key)), why)
    fields = fam.parse(reader)
    unknown = sorted(k for k in cfg if k not in used and k not in HARMLESS)
    if unknown:
        raise ModelLoadError(f"config.json field(s) not implemented by attncli for {model_type}: {', '.join(unknown)}")
    gen = generation_config or {}
    text = cfg.get("text_config") or {}  # a multimodal wrapper may keep the ids with its text decoder
    eos = gen.get("eos_token_id", cfg.get("eos_token_id", text.get("eos_token_id")))
    bos = gen.get("bos_token_id", cfg.get("bos_token_id", text.get("bos_token_id")))
    pad = gen.get("pad_token_id", cfg.get("pad_token_id", text.get("pad_token_id")))
    return ModelConfig(
        arch=fam.arch,
        bos_token_id=first_id(bos),
        eos_token_ids=id_list(eos),
        pad_token_id=first_id(pad),
        dtype=checkpoint_dtype(cfg),
        **fields,
    )


def write_config(c: ModelConfig) -> dict[str, Any]:
    fam = family(c.arch)
    out: dict[str, Any] = {
        "architectures": [fam.hf_class],
        "model_type": fam.arch,
        **fam.to_hf(c),
        "tie_word_embeddings": c.tie_word_embeddings,
    }
    if c.bos_token_id is not None:
        out["bos_token_id"] = c.bos_token_id
    if c.eos_token_ids:
        eos = c.eos_token_ids
        out["eos_token_id"] = eos[0] if len(eos) == 1 else list(eos)
    if c.pad_token_id is not None:
        out["pad_token_id"] = c.pad_token_id
    if c.dtype is not None:
        out["dtype"] = c.dtype
    return out
