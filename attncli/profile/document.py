"""The result document of a sweep: the environment it ran in, the model, the rows and the
growth fit of each series (what --out writes and --compare reads)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from attncli import __version__
from attncli.model.transformer import Transformer
from attncli.profile.fit import fit_growth
from attncli.profile.flops import attention_crossover
from attncli.profile.spec import SweepSpec
from attncli.profile.sweep import Row, series_key


def fits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per series: growth of latency and of peak memory with T."""
    out = []
    keys = []
    for r in rows:
        if series_key(r) not in keys:
            keys.append(series_key(r))
    for key in keys:
        ok = [r for r in rows if series_key(r) == key and r["status"] == "ok"]
        metrics = ["latency_ms", "peak_memory_bytes"]
        if ok and all(r.get("attn_ms") is not None for r in ok):  # --breakdown: each part's own growth
            metrics += ["attn_ms", "other_ms"]
        for metric in metrics:
            fit = fit_growth([r["seq_len"] for r in ok], [r[metric] for r in ok])
            mode, cache, attn, batch = key
            out.append({"mode": mode, "cache": cache, "attn": attn, "batch": batch, "metric": metric, **fit.to_dict()})
    return out


def environment(device: torch.device, dtype: torch.dtype, tp=None) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {
        "tp": tp.world if tp is not None else 1,  # tensor-parallel ranks (each row is rank 0's timing)
        "tp_backend": tp.backend if tp is not None else None,
        "attncli": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).replace("torch.", ""),
        "commit": _commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def model_summary(model: Transformer, name: str, random_weights: bool) -> dict[str, Any]:
    cfg = model.cfg
    return {
        "name": name,
        "architecture": cfg.arch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": cfg.num_layers,
        "heads": cfg.num_heads,
        "kv_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_size": cfg.hidden_size,
        "context_length": cfg.context_length,
        "sliding_window": cfg.sliding_window,
        "dtype": str(model.dtype).replace("torch.", ""),
        "random_weights": random_weights,
        "attention_overtakes_at": attention_crossover(cfg),
    }


def result_document(env: dict, model: dict, rows: list[Row], spec: SweepSpec) -> dict[str, Any]:
    dicts = [r.to_dict() for r in rows]
    return {"env": env, "model": model, "spec": asdict(spec), "rows": dicts, "fits": fits(dicts)}
