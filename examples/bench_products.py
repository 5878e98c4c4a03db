"""Which CPU product path a whole forward should take, by the number of rows it multiplies.

    python examples/bench_products.py --preset gpt2 --rows 1,2,3,8,64,512

Builds the preset with random weights (attncli's "split" layout: by-shape storage) and times
forwards of 1 x rows tokens (logits of the last only) three ways: every product through
F.linear (MKL), every product split across threads (attncli.model.linear.split_product),
and every product through oneDNN. attncli.model.linear picks per product from what this
shows (SPLIT_MAX_ROWS).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from attncli.model.build import build_model
from attncli.model import linear
from attncli.model.presets import preset_config, preset_names


def forward_ms(model, rows: int, mode: str, repeats: int) -> float:
    saved = linear.SPLIT_MAX_ROWS, linear._ONEDNN_LINEAR
    linear.SPLIT_MAX_ROWS = 10**9 if mode == "split" else 0
    linear._ONEDNN_LINEAR = saved[1] if mode == "onednn" else None
    try:
        ids = torch.randint(0, model.cfg.vocab_size, (1, rows), generator=torch.Generator().manual_seed(rows))
        with torch.inference_mode():
            model(ids, last_only=True)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                model(ids, last_only=True)
                times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e3
    finally:
        linear.SPLIT_MAX_ROWS, linear._ONEDNN_LINEAR = saved


def main(argv: list[str] | None = None) -> dict[int, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gpt2", choices=preset_names())
    ap.add_argument("--rows", default="1,2,3,8,64,512")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = build_model(preset_config(args.preset), device="cpu", dtype=torch.float32, random_weights=True,
                        layout="split")
    modes = ["mkl", "split", "onednn"] if linear._ONEDNN_LINEAR is not None else ["mkl", "split"]
    print(f"{args.preset}, cpu float32, {torch.get_num_threads()} threads: ms per forward")
    print(f"{'rows':>6} " + " ".join(f"{m:>8}" for m in modes) + "  fastest   attncli takes")
    out = {}
    for rows in [int(r) for r in args.rows.split(",")]:
        # each mode twice, in both orders, best kept: a drifting host favours none
        first = {m: forward_ms(model, rows, m, args.repeats) for m in modes}
        second = {m: forward_ms(model, rows, m, args.repeats) for m in reversed(modes)}
        res = {m: min(first[m], second[m]) for m in modes}
        takes = "split" if rows <= linear.SPLIT_MAX_ROWS else ("onednn" if "onednn" in modes else "mkl")
        best = min(res, key=res.get)
        print(f"{rows:>6} " + " ".join(f"{res[m]:8.1f}" for m in modes) + f"  {best:8}  {takes}")
        out[rows] = res
    return out


if __name__ == "__main__":
    main()
