"""The parts of one decoder layer: attention (fused q/k/v, optional q/k norms, RoPE, the
KV cache, a backend), the MLP (gated or plain), and the block that wires them with its
norms and residuals (pre-norm, post-norm, sandwich, or GPT-NeoX's parallel residual).

Letters: B batch, T new tokens (queries), S keys, C hidden size, H query heads, Hkv key/value
heads, D head dim, I MLP width.
"""

from __future__ import annotations

import torch
from torch import nn

from attncli.model.attention import AttnProbe, LayerMask, eager_attention, sdpa_attention
from attncli.model.attention.backends import read_kv
from attncli.model.attention.flex import FlexRunner
from attncli.model.attention.kernels import KernelLog, sdpa_kernel
from attncli.model.cache import KVCache
from attncli.model.config import ModelConfig
from attncli.model.layers import RMSNorm, activation, make_norm
from attncli.model.linear import Linear, _compiling
from attncli.model.rope import apply_rope

Tensor = torch.Tensor


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.h, self.hkv, self.d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.qkv = Linear(cfg.hidden_size, cfg.q_dim + 2 * cfg.kv_dim, bias=cfg.qkv_bias)
        self.o = Linear(cfg.q_dim, cfg.hidden_size, bias=cfg.o_bias)
        self.qk_norm = cfg.qk_norm and cfg.qk_norm_scope == "head"
        self.qk_proj_norm = cfg.qk_norm and cfg.qk_norm_scope == "projection"
        if self.qk_norm:
            self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps, cfg.norm_style)
            self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps, cfg.norm_style)
        if self.qk_proj_norm:  # over all heads' q (or k) at once
            self.q_norm = RMSNorm(cfg.q_dim, cfg.norm_eps, cfg.norm_style)
            self.k_norm = RMSNorm(cfg.kv_dim, cfg.norm_eps, cfg.norm_style)
        self.scale = cfg.attn_scale / (layer + 1 if cfg.scale_by_inverse_layer_idx else 1)
        self.softcap = cfg.attn_softcap
        self.layer = layer
        self.kind = "full"
        self.flex: FlexRunner | None = None  # the model's, set by Transformer
        self.kernels: KernelLog | None = None  # the model's, set by Transformer
        self.clock = None  # profile --breakdown: times the attention kernel alone (attncli.profile.breakdown)

    def forward(
        self,
        x: Tensor,  # (B, T, C), or (B, C) for one token (the compiled decode step)
        rope: tuple[Tensor, Tensor] | None,
        lm: LayerMask,
        cache: KVCache | None,
        start: int,
        backend: str,
        probe: bool,
    ) -> tuple[Tensor, AttnProbe | None]:
        b, t = (x.shape[0], x.shape[1]) if x.dim() == 3 else (x.shape[0], 1)
        qkv = self.qkv(x)  # (B, T, (H + 2 Hkv) D)
        if self.qk_proj_norm:
            q, k, v = qkv.split([self.h * self.d, self.hkv * self.d, self.hkv * self.d], dim=-1)
            qkv = torch.cat((self.q_norm(q), self.k_norm(k), v), dim=-1)
        qkv = qkv.view(b, t, self.h + 2 * self.hkv, self.d)  # (B, T, H + 2 Hkv, D)
        qk, v = qkv[:, :, : self.h + self.hkv], qkv[:, :, self.h + self.hkv :]
        if self.qk_norm:
            qk = torch.cat((self.q_norm(qk[:, :, : self.h]), self.k_norm(qk[:, :, self.h :])), dim=2)
        if rope is not None:
            qk = apply_rope(qk, *rope)  # q and k heads in one pass
        q = qk[:, :, : self.h].transpose(1, 2)  # (B, H, T, D)
        k = qk[:, :, self.h :].transpose(1, 2)  # (B, Hkv, T, D)
        v = v.transpose(1, 2)  # (B, Hkv, T, D)
        if cache is not None:  # flex reads every slot (static shapes: one compile), the mask hides the rest
            k, v = cache.write(self.layer, k, v, start, whole=backend == "flex" and not probe)  # (B, Hkv, S, D)
        if self.clock is not None:
            with self.clock:
                out, kept = self._attend(q, k, v, lm, backend, probe)
        else:
            out, kept = self._attend(q, k, v, lm, backend, probe)
        out = out.transpose(1, 2).reshape(*x.shape[:-1], self.h * self.d)  # (B, T, H*D) or (B, H*D)
        return self.o(out), kept

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, lm: LayerMask, backend: str,
                probe: bool) -> tuple[Tensor, AttnProbe | None]:
        """softmax(q k^T) v by the backend asked for: q (B, H, T, D), k/v (B, Hkv, S, D)."""
        if self.kernels is not None and self.kernels.active:
            self.kernels.add(self._kernel(q, k, v, lm, backend, probe))
        if backend == "flex" and not probe:
            out, kept = self.flex.attend(q, k, v, lm, self.kind, scale=self.scale, softcap=self.softcap), None
        # SDPA cannot soft-cap scores: capped layers run the eager math under sdpa,
        # exactly as the reference (which has no SDPA path for them either). Inside the
        # compiled CPU decode step too: there the explicit mask over every slot sends SDPA to
        # its masked kernel (~100 us a call at the SmolLM2-135M shape), while inductor fuses
        # the eager math into the step's own loops (the step: 33.4 -> 29.6 ms).
        elif self._eager_math(q, backend, probe):
            out, kept = eager_attention(q, k, v, lm, scale=self.scale, probe=probe, softcap=self.softcap)
        else:
            out, kept = sdpa_attention(q, k, v, lm, scale=self.scale), None
        return out, kept

    def _eager_math(self, q: Tensor, backend: str, probe: bool) -> bool:
        return backend == "eager" or probe or self.softcap is not None or (q.device.type == "cpu" and _compiling())

    def _kernel(self, q: Tensor, k: Tensor, v: Tensor, lm: LayerMask, backend: str, probe: bool) -> str:
        """The name of the kernel _attend is about to run (attncli.model.attention.kernels)."""
        if backend == "flex" and not probe:
            return "flex"
        if self._eager_math(q, backend, probe):
            return "eager"
        kr, vr = read_kv(k, v, lm)
        mask = lm.mask
        if lm.blocks:  # windowed blocks: each call has a mask (never allocated here: expanded)
            mask = torch.ones((), dtype=torch.bool, device=q.device).expand(1, 1, q.shape[2], kr.shape[2])
        return sdpa_kernel(q, kr, vr, mask, lm.is_causal, self.scale, self.h != self.hkv)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gated = cfg.mlp == "gated"
        width = cfg.intermediate_size
        if self.gated:
            self.gate_up = Linear(cfg.hidden_size, 2 * width, bias=cfg.mlp_bias)  # [gate; up]
        else:
            self.up = Linear(cfg.hidden_size, width, bias=cfg.mlp_bias)
        self.down = Linear(width, cfg.hidden_size, bias=cfg.mlp_bias)
        self.act = activation(cfg.act)

    def forward(self, x: Tensor) -> Tensor:
        if self.gated:
            gate, up = self.gate_up(x).chunk(2, dim=-1)
            return self.down(self.act(gate).mul_(up))  # in place: one (B, T, I) buffer fewer
        return self.down(self.act(self.up(x)))


class Block(nn.Module):
    """One layer. Parameter names say where each norm sits: ``attn_norm`` / ``mlp_norm`` before
    the sublayers (pre-norm and sandwich), ``attn_post_norm`` / ``mlp_post_norm`` on their
    outputs (post-norm and sandwich)."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.pre = cfg.norm_placement in ("pre", "sandwich")
        self.post = cfg.norm_placement in ("post", "sandwich")
        self.parallel = cfg.parallel_residual
        if self.pre:
            self.attn_norm = make_norm(cfg, cfg.hidden_size)
            self.mlp_norm = make_norm(cfg, cfg.hidden_size)
        if self.post:
            self.attn_post_norm = make_norm(cfg, cfg.hidden_size)
            self.mlp_post_norm = make_norm(cfg, cfg.hidden_size)
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg)
        self.window = cfg.window_of(layer)
        self.chunk = cfg.chunk_of(layer)
        self.kind = cfg.layer_types[layer]  # which of the model's masks the layer applies
        self.attn.kind = self.kind
        self.rope = cfg.rope_of(layer)  # "global" | "local" | None

    def step(self, x: Tensor, rope, lm: LayerMask, cache: KVCache | None, start, backend: str,
             probe: bool) -> tuple[Tensor, AttnProbe | None]:
        """x (B, T, C) -> (B, T, C). A plain method, not forward: a module call's hooks cost
        more per decode step than this whole wiring."""
        h, kept = self.attn(self.attn_norm(x) if self.pre else x, rope, lm, cache, start, backend, probe)
        if self.post:
            h = self.attn_post_norm(h)
        if self.parallel:  # GPT-NeoX: both sublayers read the same input; summed as the reference does
            return self.mlp(self.mlp_norm(x)) + h + x, kept
        x = x + h
        m = self.mlp(self.mlp_norm(x) if self.pre else x)
        if self.post:
            m = self.mlp_post_norm(m)
        return x + m, kept
