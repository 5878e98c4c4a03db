"""Saving: our model as a Hugging Face folder (safetensors + config.json) that both
attncli and transformers read. The family's weight map, read backwards."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from attncli.atomic import write_atomic
from attncli.checkpoint.files import read_json
from attncli.checkpoint.plan import parts_to_heads, split_sizes
from attncli.errors import BadInputError, ModelLoadError
from attncli.model.build import DTYPE_NAMES
from attncli.model.config import ModelConfig
from attncli.model.families import family
from attncli.model.families.common import rename
from attncli.model.transformer import Transformer


def export_state(model: Transformer, cfg: ModelConfig, *, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Our parameters under their Hugging Face names: fused q/k/v and gate/up split
    back into their parts, GPT-2's Conv1D weights transposed to (in, out), the optional
    family's spelling (GPT-2's prefix) put back, and no ``lm_head.weight`` when it is tied to the embedding.
    Each tensor is a fresh contiguous CPU copy (safetensors refuses shared storage)."""
    fam = family(cfg.arch)
    weight_map, layout = fam.weights, fam.layouts[0]
    tied = cfg.tie_word_embeddings
    if tied and model.lm_head.weight is not model.embed.weight and not torch.equal(
        model.lm_head.weight, model.embed.weight
    ):
        raise BadInputError("the config ties lm_head to the embedding but the model's two differ (call tie_weights())")
    out: dict[str, torch.Tensor] = {}
    for ours, tensor in model.state_dict().items():
        if ours == "lm_head.weight" and tied:
            continue
        m = re.match(r"layers\.(\d+)\.", ours)
        template = re.sub(r"^layers\.\d+\.", "layers.{}.", ours)
        if template not in weight_map:
            raise ModelLoadError(f"no checkpoint name for our parameter {ours!r} ({cfg.arch})")
        srcs = weight_map[template]
        pieces = tensor.split(split_sizes(template, cfg), dim=0) if len(srcs) > 1 else (tensor,)
        for src, piece in zip(srcs, pieces, strict=True):
            name = rename(src.name.format(m.group(1)) if m else src.name, layout)
            piece = piece.detach().to("cpu", dtype or piece.dtype)
            if src.heads_interleaved:
                piece = parts_to_heads(piece, cfg.num_heads)
            out[name] = (piece.t() if src.transpose else piece).contiguous().clone()
    return out


def _write_durably(path: Path, write) -> None:
    """``write(tmp)`` through attncli.atomic (temporary file beside ``path``, renamed over
    it), with the bytes flushed to disk before the rename, so that even a crash leaves the
    old file or the whole new one."""

    def write_and_sync(tmp: str) -> None:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())

    write_atomic(path, write_and_sync)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_durably(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def save_pretrained(model: Transformer, cfg: ModelConfig, folder: str | Path, *,
                    dtype: torch.dtype | str | None = None) -> list[Path]:
    """Write ``model`` as a Hugging Face model folder that both :func:`load_model` and
    transformers' ``from_pretrained`` read: model.safetensors (HF names, via the
    family weight map read backwards), generation_config.json and config.json (``cfg.to_hf()``,
    written last, so a folder is a model only once its weights are in place).
    ``dtype`` (default: the model's) is the dtype stored. Returns the files written."""
    from safetensors.torch import save_file

    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise BadInputError(f"unknown dtype {dtype!r}; use {', '.join(DTYPE_NAMES)}")
        dtype = DTYPE_NAMES[dtype]
    dtype = dtype or model.dtype
    dtype_name = {v: k for k, v in DTYPE_NAMES.items()}.get(dtype)
    if dtype_name is None:
        raise BadInputError(f"cannot save in {dtype}; use {', '.join(DTYPE_NAMES)}")
    hf_config = cfg.with_(dtype=dtype_name).to_hf()  # refuses configs HF cannot express, before writing
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    state = export_state(model, cfg, dtype=dtype)

    weights = folder / "model.safetensors"
    _write_durably(weights, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    # A shard index left by an earlier save would win over the new file: remove it and its shards.
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        stale = set(read_json(index, "the shard index").get("weight_map", {}).values())
        index.unlink()
        for shard in stale - {weights.name}:
            (folder / shard).unlink(missing_ok=True)
    generation = {k: hf_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in hf_config}
    _write_json(folder / "generation_config.json", generation)
    _write_json(folder / "config.json", hf_config)
    return [weights, folder / "generation_config.json", folder / "config.json"]
