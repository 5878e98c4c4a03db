"""Building a model from a config alone: on the meta device (to load weights into), or
with random weights allocated once on the device (profiling real shapes without a
download); and the device and dtype a run asks for."""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch

from attncli.errors import BadInputError
from attncli.model.config import ModelConfig
from attncli.model.layout import apply as apply_layout
from attncli.model.layout import set_split, transposed_names
from attncli.model.transformer import Transformer

DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", spec):
        if not torch.cuda.is_available():
            raise BadInputError(f"--device {spec}: CUDA is not available on this machine (try --device cpu)")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BadInputError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    if spec == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise BadInputError("--device mps: MPS is not available on this machine")
        return torch.device("mps")
    raise BadInputError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")


def resolve_dtype(spec: str, checkpoint_dtype: str | None, device: torch.device) -> torch.dtype:
    """``auto``: the checkpoint's dtype on a GPU, float32 on the CPU (where bf16/fp16
    matrix products are emulated and ~100x slower)."""
    if spec == "auto":
        if device.type == "cpu":
            return torch.float32
        return DTYPE_NAMES.get(checkpoint_dtype or "", torch.float32)
    if spec not in DTYPE_NAMES:
        raise BadInputError(f"unknown dtype {spec!r}; use auto, {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[spec]


@contextmanager
def default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_model(cfg: ModelConfig, *, device: torch.device | str, dtype: torch.dtype, random_weights: bool,
                layout: str | None = None, tp=None) -> Transformer:
    """A model whose parameters are ``dtype``: empty (on the meta device) for loading into,
    or, with ``random_weights``, allocated once on ``device`` and filled in place (normal
    weights, unit norms, zero biases): no float32 copy first, no host round trip.
    ``tp``: a tensor-parallel group; ``cfg`` is the global config, the model this rank's part."""
    if tp is not None:
        from attncli.distributed.shard import local_config

        cfg = local_config(cfg, tp.world)
    with torch.device("meta"), default_dtype(dtype):
        model = Transformer(cfg, tp)
    if not random_weights:
        return model
    model = model.to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(0.0 if cfg.norm_style == "gemma" else 1.0)  # Gemma stores (1 + w): w = 0 is the unit norm
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    model.init_buffers(device)
    apply_layout(model, transposed_names(model, torch.device(device), layout))
    set_split(model, torch.device(device), layout)
    return model.eval().requires_grad_(False)
