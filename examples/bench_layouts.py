"""Which weight layout streams faster for decode's matrix-vector products, on this device.

    python examples/bench_layouts.py --preset gpt2
    python examples/bench_layouts.py --preset smollm2-135m --device cuda --dtype bfloat16

For every distinct (out, in) weight shape of the preset: time y = F.linear(x, W) with x of
shape (1, in), W stored (out, in) ("out_in") and stored (in, out) ("in_out", used through a
transposed view), and print the bandwidth each reaches and which layout attncli.layout's
"auto" policy picks. attncli keeps whatever this shows wins (see attncli/layout.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from attncli.layout import transposed_names
from attncli.loading import build_model, resolve_device, resolve_dtype
from attncli.memory import synchronize
from attncli.presets import preset_config, preset_names


def gbs(ws: list[torch.Tensor], x: torch.Tensor, device, repeats: int) -> float:
    """Bandwidth of F.linear over copies of one matrix, one after another: enough copies
    (>= 256 MB) that each is read from memory, as in decode, not from the last-level cache."""
    def sweep():
        for w in ws:
            F.linear(x, w)

    sweep()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t = time.perf_counter()
        sweep()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return sum(w.numel() * w.element_size() for w in ws) / statistics.median(times) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gpt2", choices=preset_names())
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    cfg = preset_config(args.preset)
    dtype = resolve_dtype(args.dtype, cfg.dtype, dev)
    with torch.device("meta"):
        model = build_model(cfg, device="meta", dtype=dtype, random_weights=False)
    chosen = transposed_names(model, dev)
    shapes: dict[tuple[int, int], list[str]] = {}
    for name, p in model.named_parameters():
        if p.dim() == 2 and "embed" not in name:  # lookups, not products
            shapes.setdefault(tuple(p.shape), []).append(name)
    print(f"{args.preset} on {dev} ({dtype}), threads {torch.get_num_threads()}: GB/s of y = F.linear(x (1, in), W)")
    print(f"{'(out, in)':>16} {'matrices':>8} {'out_in':>8} {'in_out':>8}  winner  auto picks")
    for (out_f, in_f), names in sorted(shapes.items(), key=lambda kv: -kv[0][0] * kv[0][1]):
        copies = max(1, -(-256 * 2**20 // (out_f * in_f * dtype.itemsize)))
        ws = [torch.randn(out_f, in_f, device=dev, dtype=dtype) for _ in range(copies)]
        x = torch.randn(1, in_f, device=dev, dtype=dtype)
        a = gbs(ws, x, dev, args.repeats)
        ws = [w.t().contiguous().t() for w in ws]
        b = gbs(ws, x, dev, args.repeats)
        del ws
        pick = "in_out" if names[0] in chosen else "out_in"
        win = "in_out" if b > a else "out_in"
        print(f"{str((out_f, in_f)):>16} {len(names):>8} {a:8.1f} {b:8.1f}  {win:6}  {pick}{'' if pick == win else '  (!)'}")


if __name__ == "__main__":
    main()
