"""Growth fits for a series of (T, y) points: the log-log exponent and a*T^2 + b*T + c.

The exponent answers "how fast does it grow" in one number (1 linear, 2 quadratic);
the quadratic fit separates the parts: c fixed cost, b per-token work (projections,
MLP), a the pairwise work of attention.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Fit:
    exponent: float | None  # slope of log y against log T
    a: float | None  # y ~ a*T^2 + b*T + c
    b: float | None
    c: float | None
    r2_loglog: float | None
    r2_quadratic: float | None
    points: int

    def to_dict(self) -> dict:
        return asdict(self)


def _r2(y: torch.Tensor, pred: torch.Tensor) -> float | None:
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - pred) ** 2).sum())
    return None if ss_tot == 0 else 1.0 - ss_res / ss_tot


def fit_growth(ts: Sequence[float], ys: Sequence[float]) -> Fit:
    """Least-squares fits; None where there are too few usable points (the exponent
    needs 2 positive points, the quadratic 3)."""
    pts = [(float(t), float(y)) for t, y in zip(ts, ys) if t > 0 and y is not None and y > 0 and math.isfinite(y)]
    n = len(pts)
    exponent = r2_log = a = b = c = r2_q = None
    if n >= 2:
        x = torch.tensor([math.log(t) for t, _ in pts], dtype=torch.float64)
        y = torch.tensor([math.log(v) for _, v in pts], dtype=torch.float64)
        design = torch.stack([x, torch.ones_like(x)], dim=1)
        sol = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
        exponent = float(sol[0])
        r2_log = _r2(y, design @ sol)
    if n >= 3:
        t = torch.tensor([p[0] for p in pts], dtype=torch.float64)
        y = torch.tensor([p[1] for p in pts], dtype=torch.float64)
        scale = float(t.max())  # conditioning: solve in T/scale, then undo
        u = t / scale
        design = torch.stack([u * u, u, torch.ones_like(u)], dim=1)
        sol = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
        a, b, c = float(sol[0]) / scale**2, float(sol[1]) / scale, float(sol[2])
        r2_q = _r2(y, design @ sol)
    return Fit(exponent, a, b, c, r2_log, r2_q, n)
