"""attncli against llama.cpp (and transformers) on the same random f32 weights, in one run, interleaved.

    python examples/bench_vs_llamacpp.py --shape gpt2 --repeats 5 \
        --out profiles/results/bench-gpt2-vs-llamacpp-cpu.json
    LLAMA_BENCH=/path/to/llama-bench python examples/bench_vs_llamacpp.py --shape smollm-135m

One random checkpoint of a public shape is written as safetensors (read by attncli and
transformers) and as an f32 GGUF (examples/gguf_export.py, read by llama.cpp). Before any
timing, one forward's last-position logits are compared across the three (the same model,
or the ratios mean nothing). Then, as llama-bench measures:
  - tg128 at depth 32: 128 greedy tokens after a 32-token prompt; for attncli and transformers
    the time of a 128-token run minus a 1-token run (prefill + first token), over 127 tokens;
  - pp128 and pp512: one forward over T tokens (last position's logits), tokens/s.
Each repeat runs every side once, in an order that alternates (A B C, C B A), with the memory
bandwidth sampled between repeats; figures are medians, ratios are between medians of the same
run, and the decode floor is bandwidth / weight bytes.

llama.cpp is found as the ``llama-bench`` program (--llama-bench, $LLAMA_BENCH or PATH) and,
for the logits check, the ``llama_cpp`` module (llama-cpp-python; point LLAMA_CPP_LIB_PATH at
a libllama build). Either may be missing: the bench says so and times the rest. Bench-only
packages: gguf, llama-cpp-python. Needs transformers (the test extra).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_transformers as bvt  # noqa: E402  (a sibling script: shapes, bandwidth, runners)

DEPTH, TG, PP = 32, 128, (128, 512)


def find_llama_bench(given: str | None) -> str | None:
    path = given or os.environ.get("LLAMA_BENCH") or shutil.which("llama-bench")
    return path if path and Path(path).is_file() and os.access(path, os.X_OK) else None


def llama_bench(exe: str, gguf: Path, threads: int, *, pp: tuple[int, ...] = (), tg: int = 0, depth: int = 0) -> dict:
    """One llama-bench invocation (one repetition of each test); {test name: tokens/s}, plus its build."""
    cmd = [exe, "-m", str(gguf), "-t", str(threads), "-r", "1", "-o", "json",
           "-p", ",".join(map(str, pp)) if pp else "0", "-n", str(tg), "-d", str(depth)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"llama-bench failed ({run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
    out = {}
    for r in json.loads(run.stdout):
        name = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
        out[name] = r["avg_ts"]
        out["build"] = f"{r.get('build_commit', '?')} ({r.get('build_number', '?')})"
    return out


def llamacpp_logits(gguf: Path, prompt: list[int], threads: int):
    """Last-position logits of llama.cpp over ``prompt``, or None without llama-cpp-python."""
    try:
        from llama_cpp import Llama
    except (ImportError, OSError, FileNotFoundError, RuntimeError):
        return None
    llm = Llama(str(gguf), n_ctx=len(prompt) + 8, n_threads=threads, logits_all=True, verbose=False)
    llm.eval(prompt)
    return torch.tensor(llm.scores[len(prompt) - 1])


def compare_logits(ours, theirs, ref_name: str) -> dict:
    diff = (ours - theirs).abs().max().item()
    return {f"max_abs_diff_vs_{ref_name}": diff, f"rel_diff_vs_{ref_name}": diff / theirs.abs().max().item(),
            f"same_argmax_as_{ref_name}": ours.argmax().item() == theirs.argmax().item()}


def ours_prefill(model, ids):
    with torch.inference_mode():
        model(ids, last_only=True)


def hf_prefill(model, ids):
    with torch.inference_mode():
        model(ids, logits_to_keep=1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(bvt.SHAPES), default="gpt2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--llama-bench", help="path of llama-bench (default: $LLAMA_BENCH, then PATH)")
    ap.add_argument("--no-llamacpp", action="store_true", help="time attncli and transformers only")
    ap.add_argument("--tg", type=int, default=TG, help="tokens generated per decode run")
    ap.add_argument("--depth", type=int, default=DEPTH, help="prompt tokens before the timed decode")
    ap.add_argument("--pp", default=",".join(map(str, PP)), help="prefill lengths ('' to skip)")
    ap.add_argument("--compile", action="store_true", help="also time attncli with --compile (the compiled decode step)")
    ap.add_argument("--bandwidth-gib", type=float, default=1.0)
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pp = tuple(int(x) for x in args.pp.split(",") if x)
    exe = None if args.no_llamacpp else find_llama_bench(args.llama_bench)
    if exe is None and not args.no_llamacpp:
        print("llama.cpp: llama-bench not found (--llama-bench, $LLAMA_BENCH or PATH): timing attncli and "
              "transformers only")
    bvt.TOTAL_NEW = args.tg

    from transformers import AutoModelForCausalLM

    from attncli.checkpoint.load import load_model
    from attncli.model.layout import cpuinfo_field, policy

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bvt.build_checkpoint(args.shape, folder)
        ours = load_model(folder).model
        theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa").eval()
        theirs.generation_config.eos_token_id = None
        gguf = None
        if not args.no_llamacpp:  # also without llama-bench: llama-cpp-python alone checks the logits
            try:
                import gguf_export
                gguf = gguf_export.export(folder, Path(tmp) / "model.gguf")
            except ImportError:
                print("llama.cpp: the gguf package is missing (pip install gguf): timing attncli and transformers only")
                exe = None
        prompt = torch.randint(100, 1000, (args.depth,), generator=torch.Generator().manual_seed(1)).tolist()
        results = {"env": {**bvt.env(argparse.Namespace(device="cpu", threads=args.threads, dtype="float32",
                                                        prompt_len=args.depth, new=args.tg)),
                           "cpu_model": cpuinfo_field("model name") or "unknown",
                           "layout": policy(ours.device), "llama_bench": exe},
                   "shape": args.shape, "logits": {}, "decode": {}, "prefill": []}
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            mine = ours(ids, last_only=True).logits[0, -1]
            results["logits"].update(compare_logits(mine, theirs(ids).logits[0, -1], "transformers"))
        ref = llamacpp_logits(gguf, prompt, args.threads) if gguf is not None else None
        if ref is not None:
            results["logits"].update(compare_logits(mine, ref, "llamacpp"))
        elif gguf is not None:
            print("llama.cpp: llama_cpp (llama-cpp-python) not importable: logits not compared with llama.cpp")
        results["logits"] = {k: (round(v, 7) if isinstance(v, float) else v) for k, v in results["logits"].items()}
        print(f"logits at the last of {args.depth} tokens, attncli against:")
        for ref_name in ("transformers", "llamacpp"):
            if f"max_abs_diff_vs_{ref_name}" in results["logits"]:
                got = {k.rsplit("_vs_", 1)[0].rsplit("_as_", 1)[0]: v for k, v in results["logits"].items()
                       if k.endswith(ref_name)}
                print(f"  {ref_name:13s} max |diff| {got['max_abs_diff']:.2e} (relative {got['rel_diff']:.2e}), "
                      f"same argmax: {got['same_argmax']}")

        weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
        bw = bvt.Bandwidth("cpu", args.bandwidth_gib)
        bw.sample()
        results["weight_bytes"] = weight_bytes
        results.update(decode_runs(args, ours, theirs, exe, gguf, prompt, bw, weight_bytes))
        results["prefill"] = prefill_runs(args, ours, theirs, exe, gguf, pp)
        bvt.finish(results, bw, weight_bytes, args.out)
    return results


def decode_runs(args, ours, theirs, exe, gguf, prompt, bw, weight_bytes: int) -> dict:
    runners = {"attncli": lambda: bvt.decode_rate(lambda p, n, c: bvt.ours_generate(ours, p, n, c), prompt,
                                                  args.tg, True)[0],
               "transformers": lambda: bvt.decode_rate(lambda p, n, c: torch.no_grad()(bvt.hf_generate)(theirs, p, n, c),
                                                       prompt, args.tg, True)[0]}
    if args.compile:  # its warm-up below compiles; compile time is excluded, as llama.cpp's build is
        runners["attncli[compile]"] = lambda: bvt.decode_rate(
            lambda p, n, c: bvt.ours_generate(ours, p, n, c, compile=True), prompt, args.tg, True)[0]
    build = None
    if exe is not None:
        runners["llama.cpp"] = lambda: llama_bench(exe, gguf, args.threads, tg=args.tg, depth=args.depth)[f"tg{args.tg}"]
        build = llama_bench(exe, gguf, args.threads, tg=4, depth=4)["build"]  # warm-up, and its build
    bvt.ours_generate(ours, prompt, 4, True)  # warm-ups, excluded
    if args.compile:
        started = time.perf_counter()
        bvt.ours_generate(ours, prompt, 4, True, compile=True)
        print(f"attncli[compile]: decode step compiled in {time.perf_counter() - started:.1f} s")
    torch.no_grad()(bvt.hf_generate)(theirs, prompt, 4, True)
    rates: dict[str, list[float]] = {k: [] for k in runners}
    for i in range(args.repeats):
        order = list(runners) if i % 2 == 0 else list(runners)[::-1]
        for name in order:
            rates[name].append(runners[name]())
        bw.sample()
    med = {k: statistics.median(v) for k, v in rates.items()}
    floor = bw.median * 1e9 / weight_bytes
    row = {"test": f"tg{args.tg}@d{args.depth}", **{f"{k}_tokens_per_s": round(v, 2) for k, v in med.items()},
           "floor_tokens_per_s": round(floor, 2),
           "share_of_floor": {k: round(v / floor, 3) for k, v in med.items()},
           "attncli_vs_transformers": round(med["attncli"] / med["transformers"], 3),
           "repeats": {k: [round(r, 2) for r in v] for k, v in rates.items()}}
    ours_names = [k for k in med if k.startswith("attncli")]
    row["ratios_vs_transformers"] = {k: round(med[k] / med["transformers"], 3) for k in ours_names}
    if exe is not None:
        row["attncli_vs_llamacpp"] = round(med["attncli"] / med["llama.cpp"], 3)
        row["ratios_vs_llamacpp"] = {k: round(med[k] / med["llama.cpp"], 3) for k in ours_names}
    print(f"decode {row['test']} (floor {floor:.1f} tok/s at {bw.median:.1f} GB/s, medians of {args.repeats}):")
    for k, v in med.items():
        vs = f"  {v / med['transformers']:5.2f}x transformers" if k in ours_names else ""
        if k in ours_names and exe is not None:
            vs += f"  {v / med['llama.cpp']:5.2f}x llama.cpp"
        print(f"  {k:17s} {v:7.1f} tok/s  {100 * v / floor:3.0f}% of floor{vs}")
    return {"decode": row, "llamacpp_build": build}


def prefill_runs(args, ours, theirs, exe, gguf, pp) -> list[dict]:
    if not pp:
        return []
    ids = {t: torch.randint(100, 1000, (1, t), generator=torch.Generator().manual_seed(t)) for t in pp}
    for t in pp:  # warm-ups
        ours_prefill(ours, ids[t])
        hf_prefill(theirs, ids[t])
    rates: dict[int, dict[str, list[float]]] = {t: {"attncli": [], "transformers": []} for t in pp}
    for i in range(args.repeats):
        sides = ["attncli", "transformers"] + (["llama.cpp"] if exe is not None else [])
        for side in (sides if i % 2 == 0 else sides[::-1]):
            if side == "llama.cpp":
                got = llama_bench(exe, gguf, args.threads, pp=pp)
                for t in pp:
                    rates[t].setdefault("llama.cpp", []).append(got[f"pp{t}"])
                continue
            for t in pp:
                fn = ours_prefill if side == "attncli" else hf_prefill
                model = ours if side == "attncli" else theirs
                rates[t][side].append(t / bvt._timed(lambda: fn(model, ids[t])))
    rows = []
    for t in pp:
        med = {k: statistics.median(v) for k, v in rates[t].items()}
        row = {"test": f"pp{t}", **{f"{k}_tokens_per_s": round(v, 1) for k, v in med.items()},
               "attncli_vs_transformers": round(med["attncli"] / med["transformers"], 3),
               "repeats": {k: [round(r, 1) for r in v] for k, v in rates[t].items()}}
        if "llama.cpp" in med:
            row["attncli_vs_llamacpp"] = round(med["attncli"] / med["llama.cpp"], 3)
        rows.append(row)
        vs = f"  {row['attncli_vs_llamacpp']:.2f}x llama.cpp" if "llama.cpp" in med else ""
        print(f"prefill pp{t:<4d} " + "  ".join(f"{k} {v:.0f}" for k, v in med.items())
              + f" tok/s\n  attncli {row['attncli_vs_transformers']:.2f}x transformers{vs}")
    return rows


if __name__ == "__main__":
    main()
