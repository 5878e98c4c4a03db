"""Tensor parallelism, TP 1 against TP 2, in one run: decode (one cached step at depth T) and
prefill (T tokens) of a public shape with random weights, through `attncli profile`.

    python examples/bench_tp.py                    # GPT-2-small shape, T = 128, 3 rounds
    python examples/bench_tp.py --shape tiny-llama --rounds 1 --seq-len 32   # the smoke test

On one CPU the two ranks share the same cores (each gets half the threads), so TP 2 cannot
be faster: what it shows is the price of the collectives (2 all-reduces a layer, one for the
embedding, one gather of the logits) over gloo. On N GPUs each rank streams 1/N of the
weights from its own memory; the expected figures are printed beside the measured ones, from
bandwidth arithmetic (stated assumptions), as a scaling curve to check on such a machine.
TP 1 and TP 2 runs alternate (A B, B A, ...); each figure is the median over rounds of
profile's own medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_transformers as bvt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Expected multi-GPU decode: an 8B (Llama-3.1-8B shape) and a 1B model in bfloat16 on H200s.
GPU_BANDWIDTH = 4.8e12  # H200 HBM3e, bytes/s (the floor: every weight read once per token)
COLLECTIVE_S = 8e-6  # one small-message NCCL all-reduce over NVLink, seconds (typical, not measured here)
GPU_SHAPES = {"llama-3.2-1b": (1.24e9, 16), "llama-3.1-8b": (8.03e9, 32)}  # parameters, layers


def profile(folder: Path, t: int, tp: int, out: Path, repeats: int) -> dict:
    cmd = [sys.executable, "-m", "attncli", "profile", "-m", str(folder), "--seq-lens", str(t), "--mode", "both",
           "--cache", "on", "--repeats", str(repeats), "--out", str(out), "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    if tp > 1:
        cmd += ["--tp", str(tp)]
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // tp))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"attncli profile --tp {tp} failed: {done.stderr.strip().splitlines()[-1:]}")
    rows = json.loads(out.read_text())["rows"]
    return {r["mode"]: r["latency_ms"] for r in rows if r["status"] == "ok"}


def expected_gpu(world: int) -> dict:
    """Decode step ms = weights / (N x bandwidth) + (2L + 2) collectives: the arithmetic."""
    out = {}
    for name, (params, layers) in GPU_SHAPES.items():
        stream = 2 * params / (world * GPU_BANDWIDTH)
        talk = (2 * layers + 2) * COLLECTIVE_S if world > 1 else 0.0
        out[name] = round((stream + talk) * 1e3, 3)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(bvt.SHAPES), default="gpt2")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    model_type, cfg = bvt.SHAPES[args.shape]
    layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    runs: dict[int, list[dict]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        bvt.build_checkpoint(args.shape, folder, torch.float32)
        for r in range(args.rounds):
            for tp in ((1, 2) if r % 2 == 0 else (2, 1)):
                runs[tp].append(profile(folder, args.seq_len, tp, Path(tmp) / f"tp{tp}-{r}.json", args.repeats))
    med = {tp: {mode: statistics.median(x[mode] for x in got) for mode in ("prefill", "decode")}
           for tp, got in runs.items()}
    collectives = 2 * layers + 2
    print(f"{args.shape}, T = {args.seq_len}, float32, {os.cpu_count()} CPU cores shared by the ranks, "
          f"medians of {args.rounds} rounds")
    print(f"  {'':8s} {'TP 1 ms':>9s} {'TP 2 ms':>9s} {'TP2/TP1':>8s}")
    for mode in ("decode", "prefill"):
        a, b = med[1][mode], med[2][mode]
        print(f"  {mode:8s} {a:9.2f} {b:9.2f} {b / a:8.2f}x")
    extra = med[2]["decode"] - med[1]["decode"]
    print(f"  decode: {collectives} collectives a step; TP 2 costs {extra:+.2f} ms a step on the same cores "
          f"({1e3 * extra / collectives:+.0f} us a collective, if the compute costs what it does at TP 1)")
    gpu = {n: expected_gpu(n) for n in (1, 2, 4, 8)}
    print("expected on H200s (bf16, decode ms a step = weights / (N x 4.8 TB/s) + (2L+2) x 8 us):")
    for name in GPU_SHAPES:
        print(f"  {name:13s} " + "  ".join(f"TP{n} {gpu[n][name]:.3f}" for n in gpu))
    result = {"shape": args.shape, "seq_len": args.seq_len, "rounds": args.rounds, "cpu_cores": os.cpu_count(),
              "tp1_ms": med[1], "tp2_ms": med[2], "collectives_per_step": collectives,
              "tp2_extra_decode_ms": round(extra, 3), "runs": runs,
              "expected_gpu_decode_ms": gpu, "gpu_assumptions": {"bandwidth_bytes_per_s": GPU_BANDWIDTH,
                                                                 "collective_s": COLLECTIVE_S}}
    if args.out:
        bvt.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
