"""Which weight layout streams faster for decode's matrix-vector products, on this device.

    python examples/bench_layouts.py --preset gpt2
    python examples/bench_layouts.py --preset smollm2-135m --device cuda --dtype bfloat16

For every distinct (out, in) weight shape of the preset: time y = F.linear(x, W) with x of
shape (1, in), W stored (out, in) ("out_in") and stored (in, out) ("in_out", used through a
transposed view), each also as the split product of attncli.model.linear (one block per
thread, CPU), and print the bandwidth each reaches and what attncli.model.layout's "auto" policy
picks. attncli keeps whatever this shows wins (see attncli/layout.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from attncli.model.layout import policy, transposed_names
from attncli.model.build import build_model, resolve_device, resolve_dtype
from attncli.memory import synchronize
from attncli.model.linear import split_product
from attncli.model.presets import preset_config, preset_names


def gbs(ws: list[torch.Tensor], x: torch.Tensor, device, repeats: int, split: bool = False) -> float:
    """Bandwidth of F.linear (or the split product) over copies of one matrix, one after
    another: enough copies (>= 256 MB) that each is read from memory, as in decode, not
    from the last-level cache. NaN when the matrix does not split evenly."""
    ways = torch.get_num_threads()
    if split and split_product(x, ws[0], None, ways) is None:
        return float("nan")

    def sweep():
        for w in ws:
            split_product(x, w, None, ways) if split else F.linear(x, w)

    sweep()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t = time.perf_counter()
        sweep()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return sum(w.numel() * w.element_size() for w in ws) / statistics.median(times) / 1e9


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gpt2", choices=preset_names())
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mb", type=int, default=256, help="MB of copies per shape (more than the last-level cache)")
    args = ap.parse_args(argv)
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
    split = dev.type == "cpu" and torch.get_num_threads() > 1
    print(f"{args.preset} on {dev} ({dtype}), threads {torch.get_num_threads()}: GB/s of y = F.linear(x (1, in), W)"
          + (", and split across threads" if split else ""))
    cols = ["out_in", "in_out"] + (["out_in/s", "in_out/s"] if split else [])
    print(f"{'(out, in)':>16} {'matrices':>8} " + " ".join(f"{c:>8}" for c in cols) + "  winner    auto picks")
    for (out_f, in_f), names in sorted(shapes.items(), key=lambda kv: -kv[0][0] * kv[0][1]):
        copies = max(1, -(-args.mb * 2**20 // (out_f * in_f * dtype.itemsize)))
        ws = [torch.randn(out_f, in_f, device=dev, dtype=dtype) for _ in range(copies)]
        x = torch.randn(1, in_f, device=dev, dtype=dtype)
        res = {"out_in": gbs(ws, x, dev, args.repeats)}
        if split:
            res["out_in/s"] = gbs(ws, x, dev, args.repeats, split=True)
        ws = [w.t().contiguous().t() for w in ws]
        res["in_out"] = gbs(ws, x, dev, args.repeats)
        if split:
            res["in_out/s"] = gbs(ws, x, dev, args.repeats, split=True)
        del ws
        pick = "in_out" if names[0] in chosen else "out_in"
        if policy(dev) == "split":
            pick += "/s"
        win = max((k for k in res if res[k] == res[k]), key=res.get)
        print(f"{str((out_f, in_f)):>16} {len(names):>8} " + " ".join(f"{res[c]:8.1f}" for c in cols)
              + f"  {win:8}  {pick}{'' if pick == win else '  (!)'}")


if __name__ == "__main__":
    main()
