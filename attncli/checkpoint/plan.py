"""The load plan: which checkpoint tensors make each of our parameters, validated from
the safetensors headers alone (names and shapes) before any weight is read. The
names come from the model's family module (attncli.model.families)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from attncli.checkpoint.files import ModelFiles
from attncli.checkpoint.reader import SafetensorsFile
from attncli.errors import ModelLoadError
from attncli.model.config import ModelConfig
from attncli.model.families import family
from attncli.model.families.common import Family, Rename, Src, rename
from attncli.model.transformer import Transformer


@dataclass
class LoadPlan:
    """Which checkpoint tensors make each of our parameters, checked against the
    headers alone: names and shapes are validated before any weight is read."""

    parts: dict[str, list[tuple[str, Src, tuple[int, ...]]]]  # ours -> (theirs, how, shape in file)
    where: dict[str, SafetensorsFile]
    dropped: list[str]
    ignored: list[str]

    @property
    def checkpoint_bytes(self) -> int:
        return sum(r.tensors[n].nbytes for n, r in self.where.items())

    @property
    def files(self) -> list[Path]:
        return sorted({r.path for r in self.where.values()})

    def not_loaded(self, cfg: ModelConfig) -> dict | None:
        """The checkpoint tensors that are not read (old mask/RoPE buffers, a multimodal
        model's vision tower), for `info` to say so; None when every tensor is read."""
        if not self.dropped:
            return None
        what = family(cfg.arch).skips or "buffers that are not weights (old causal-mask / RoPE tables)"
        return {"tensors": len(self.dropped), "bytes": sum(self.where[n].tensors[n].nbytes for n in self.dropped),
                "what": what}


def heads_to_parts(t: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows (H, [q k v], D) of a per-head fused projection (GPT-NeoX) -> ours ([q k v], H, D)."""
    return t.reshape(heads, 3, -1, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def parts_to_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """The inverse of heads_to_parts, for saving."""
    return t.reshape(3, heads, -1, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def split_sizes(template: str, cfg: ModelConfig) -> list[int] | None:
    if ".attn.qkv." in template:
        return [cfg.q_dim, cfg.kv_dim, cfg.kv_dim]
    if ".mlp.gate_up." in template:
        return [cfg.intermediate_size, cfg.intermediate_size]
    return None


def plan_load(cfg: ModelConfig, files: ModelFiles) -> LoadPlan:
    where: dict[str, SafetensorsFile] = {}
    for path in files.weight_files:
        reader = SafetensorsFile(path)
        for name in reader.tensors:
            where[name] = reader
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in Transformer(cfg).named_parameters()}
    fam = family(cfg.arch)
    layout = _layout_of(fam, where)
    weight_map = fam.weights

    def checkpoint_name(template: str, layer: str | None) -> str:
        return rename(template.format(layer) if layer is not None else template, layout)

    plan: dict[str, list[tuple[str, Src, tuple[int, ...]]]] = {}
    missing, misshaped = [], []
    for ours, shape in shapes.items():
        if ours == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # tied to the embedding after loading
        m = re.match(r"layers\.(\d+)\.", ours)
        layer = m.group(1) if m else None
        template = re.sub(r"^layers\.\d+\.", "layers.{}.", ours)
        srcs = weight_map[template]
        sizes = split_sizes(template, cfg) if len(srcs) > 1 else [shape[0]]
        parts = []
        for src, rows in zip(srcs, sizes):
            want = (rows, *shape[1:])
            if src.transpose:
                want = tuple(reversed(want))
            name = checkpoint_name(src.name, layer)
            if name not in where:
                missing.append(f"{name} {list(want)}")
                continue
            got = where[name].tensors[name].shape
            if tuple(got) != want:
                misshaped.append(f"{name} is {list(got)}, config needs {list(want)}")
            parts.append((name, src, want))
        plan[ours] = parts

    consumed = {name for parts in plan.values() for name, _, _ in parts}
    drop = [re.compile(r"(?:.*\.)?" + p + "$") for p in fam.dropped]  # under any prefix
    dropped = sorted(n for n in where if n not in consumed and any(d.fullmatch(n) for d in drop))
    ignored = []
    head = rename("lm_head.weight", layout)
    if cfg.tie_word_embeddings and head in where:
        ignored.append(head)  # tied, as the reference does: the embedding wins
    unexpected = sorted(set(where) - consumed - set(dropped) - set(ignored))
    if missing or misshaped or unexpected:
        raise ModelLoadError("weights do not fit the config: " + _summarise(missing, misshaped, unexpected))
    return LoadPlan(plan, where, dropped, ignored)


def _layout_of(fam: Family, where: dict[str, SafetensorsFile]) -> Rename:
    """The spelling the checkpoint uses: the first of the family's layouts its embedding is
    found under (the plain names when none is, so that errors name the map's own names)."""
    embed = fam.weights["embed.weight"][0].name
    for layout in fam.layouts:
        if rename(embed, layout) in where:
            return layout
    return ()


def _summarise(missing: list[str], misshaped: list[str], unexpected: list[str], limit: int = 6) -> str:
    def part(label: str, items: list[str]) -> str | None:
        if not items:
            return None
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return f"{label} {len(items)}: " + "; ".join(items[:limit]) + more

    return " | ".join(p for p in (part("missing", missing), part("wrong shape", misshaped), part("unexpected", unexpected)) if p)
