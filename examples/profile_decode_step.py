"""Where one cached decode step's time goes, per operator (torch.profiler), on a real-shaped random model.

    python examples/profile_decode_step.py --shape smollm-135m
    python examples/profile_decode_step.py --shape gpt2 --steps 20 --rows 15

Prints the step's wall time (median of --steps untimed-by-the-profiler steps), then the
operators by self time per step, with calls per step, and the share spent outside the
matrix products: the per-operation overhead that a deep, narrow model pays on every layer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_transformers as bvt  # noqa: E402

PRODUCTS = {"aten::bmm", "aten::mm", "aten::addmm", "aten::baddbmm", "aten::linear", "aten::matmul",
            "mkldnn::_linear_pointwise"}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(bvt.SHAPES), default="smollm-135m")
    ap.add_argument("--depth", type=int, default=32, help="tokens in the cache before the steps")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rows", type=int, default=12, help="operators listed")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from attncli.checkpoint.load import load_model
    from attncli.model.cache import KVCache

    with tempfile.TemporaryDirectory() as tmp:
        bvt.build_checkpoint(args.shape, Path(tmp))
        model = load_model(Path(tmp)).model
    cache = KVCache(model.cfg, batch=1, max_len=args.depth + 3 * args.steps + 8, dtype=model.dtype, device="cpu")
    tok = torch.tensor([[7]])
    with torch.inference_mode():
        model(torch.randint(100, 1000, (1, args.depth)), cache=cache, last_only=True)
        for _ in range(3):
            model(tok, cache=cache, last_only=True)
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            model(tok, cache=cache, last_only=True)
            times.append(time.perf_counter() - t)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                model(tok, cache=cache, last_only=True)
    step_ms = statistics.median(times) * 1e3
    ops = [(e.key, e.self_cpu_time_total / 1e3 / args.steps, e.count / args.steps) for e in prof.key_averages()]
    ops.sort(key=lambda r: -r[1])
    total = sum(ms for _, ms, _ in ops)
    products = sum(ms for k, ms, _ in ops if k in PRODUCTS)
    calls = sum(n for _, _, n in ops)
    print(f"{args.shape}: one decode step {step_ms:.2f} ms (median of {args.steps}), {args.threads} threads; "
          f"{calls:.0f} operator calls per step")
    print(f"  matrix products {products:.2f} ms ({100 * products / total:.0f}% of profiled self time), "
          f"everything else {total - products:.2f} ms")
    print(f"  {'operator':44s} {'ms/step':>8s} {'calls':>6s}")
    for key, ms, n in ops[: args.rows]:
        print(f"  {key[:44]:44s} {ms:8.3f} {n:6.0f}")
    return {"step_ms": step_ms, "products_ms": products, "other_ms": total - products, "calls": calls,
            "ops": {k: {"ms": ms, "calls": n} for k, ms, n in ops}}


if __name__ == "__main__":
    main()
