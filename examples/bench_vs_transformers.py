"""attncli against transformers on one real-shaped random checkpoint, in one process, interleaved.

    python examples/bench_vs_transformers.py --shape gpt2 --repeats 3
    python examples/bench_vs_transformers.py --shape smollm-135m --out profiles/results/bench-smollm.json
    # GPU: bfloat16, with and without --compile, against transformers' sdpa and eager
    python examples/bench_vs_transformers.py --shape llama-3.2-1b --device cuda --dtype bfloat16 \
        --compile --hf-attn sdpa,eager --modes cache --repeats 5

Decode rate is measured the same way for both, as llama-bench's tg does: the time of a
128-new-token greedy run minus the time of a 1-new-token run (prefill + first token), over
127 tokens. Runs alternate attncli / transformers so that a host slowing down mid-way hits
both. Greedy tokens are compared, since a speed-up that changes the output is no speed-up.
The bandwidth floor is measured here: tokens/s <= bandwidth / weight bytes, with the
bandwidth of a 1 GiB torch.sum on the CPU (bytes read) and of a 1 GiB device-to-device copy
on CUDA (bytes read + written, as GPU bandwidth is quoted), sampled before and between
repeats; each decode row is set against the median of the samples so far. With --compile, the first
(warm-up) run compiles the decode step; compile time is excluded from tokens/s.
Needs transformers (the test extra): pip install -e '.[test]'.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {
    # public config.json shapes, random weights
    "gpt2": ("gpt2", dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)),
    "smollm-135m": ("llama", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                  num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                                  rms_norm_eps=1e-5, tie_word_embeddings=True)),
    "llama-3.2-1b": ("llama", dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                   num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                                   max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                   rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                    "original_max_position_embeddings": 8192})),
    # toys for the smoke test (tests/test_bench_examples.py), not for timing
    "tiny-gpt2": ("gpt2", dict(vocab_size=1000, n_positions=256, n_embd=64, n_layer=2, n_head=4)),
    "tiny-llama": ("llama", dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                 tie_word_embeddings=True)),
}
TOTAL_NEW = 128  # set from --new
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Bandwidth:
    """Memory bandwidth, sampled before the runs and again between repeats: on a shared host it
    moves (this project's 2-core VM read 33-65 GB/s on different runs), so the floor is the
    median of samples taken over the same minutes as the runs it is compared with."""

    def __init__(self, device: str, gib: float = 1.0):
        self.device, self.n = device, int(gib * 2**30 / 4)
        self.src = torch.ones(self.n, device=device)
        self.dst = torch.empty(self.n, device=device) if device == "cuda" else None
        self.samples: list[float] = []

    def sample(self, repeats: int = 5) -> float:
        if self.device == "cuda":  # device-to-device copy: n*4 bytes read and n*4 written
            self.dst.copy_(self.src)
            best = min(_timed(lambda: self.dst.copy_(self.src)) for _ in range(repeats))
            gbs = 2 * self.n * 4 / best / 1e9
        else:
            self.src.sum()
            best = min(_timed(lambda: self.src.sum()) for _ in range(repeats))
            gbs = self.n * 4 / best / 1e9
        self.samples.append(gbs)
        return gbs

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn) -> float:
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t


def build_checkpoint(shape: str, folder: Path, dtype: torch.dtype = torch.float32):
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, cfg = SHAPES[shape]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=dtype)
    model.save_pretrained(folder)


def ours_generate(model, prompt, new, use_cache, compile=False):
    from attncli.generate.loop import generate

    # Every run is sized for --new tokens and stopped after ``new`` (the warm-up and the
    # 1-token run subtracted below): one cache shape, so a compiled step compiles once.
    gen = generate(model, [prompt], max_new_tokens=max(new, TOTAL_NEW), use_cache=use_cache, compile=compile and use_cache)
    for step in gen:
        if step.index + 1 == new:
            break
    return gen.rows[0].tokens


def hf_generate(model, prompt, new, use_cache, static=False):
    ids = torch.tensor([prompt], device=model.device)
    # static: transformers' StaticCache, whose decode forward generate compiles itself
    extra = {"cache_implementation": "static"} if static and use_cache else {}
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                         do_sample=False, use_cache=use_cache, pad_token_id=0, **extra)
    return out[0, len(prompt):].tolist()


def decode_rate(fn, prompt, new, use_cache) -> tuple[float, list[int]]:
    t_one = _timed(lambda: fn(prompt, 1, use_cache))
    tokens = []
    t_all = _timed(lambda: tokens.extend(fn(prompt, new, use_cache)))
    return (new - 1) / max(t_all - t_one, 1e-9), tokens


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="gpt2")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="cache,nocache")
    ap.add_argument("--prefill", default="128,512,1024", help="prefill lengths to time ('' to skip)")
    ap.add_argument("--prefill-repeats", type=int, default=9, help="timed prefills per length and side (cheap: more)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    ap.add_argument("--also-layout", default="", help="also time attncli with these weight layouts (e.g. by_shape,out_in)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    ap.add_argument("--compile", action="store_true", help="also time attncli with --compile (cached decode)")
    ap.add_argument("--hf-attn", default="sdpa", help="transformers attention implementations to time (sdpa,eager)")
    ap.add_argument("--hf-static", action="store_true",
                    help="also time transformers' static-cache generate (compiled by transformers; cached decode)")
    ap.add_argument("--bandwidth-gib", type=float, default=1.0, help="size of the bandwidth probe")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    global TOTAL_NEW
    TOTAL_NEW = args.new

    from transformers import AutoModelForCausalLM

    from attncli.checkpoint.load import load_model

    runners: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_checkpoint(args.shape, folder, dtype)
        ours = load_model(folder, device=args.device, dtype=args.dtype).model
        prefill_models = {"attncli": ours}
        runners["attncli"] = lambda p, n, c: ours_generate(ours, p, n, c)
        if args.compile:
            runners["attncli[compile]"] = lambda p, n, c: ours_generate(ours, p, n, c, compile=True)
        for layout in [x for x in args.also_layout.split(",") if x]:
            alt = load_model(folder, device=args.device, dtype=args.dtype, layout=layout).model
            prefill_models[f"attncli[{layout}]"] = alt
            runners[f"attncli[{layout}]"] = lambda p, n, c, m=alt: ours_generate(m, p, n, c)
        hf_models = {}
        for i, impl in enumerate(x for x in args.hf_attn.split(",") if x):
            m = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation=impl).to(args.device).eval()
            m.generation_config.eos_token_id = None
            name = "transformers" if i == 0 else f"transformers[{impl}]"
            hf_models[name] = m
            runners[name] = lambda p, n, c, m=m: torch.no_grad()(hf_generate)(m, p, n, c)
            if args.hf_static and i == 0:
                runners["transformers[static]"] = lambda p, n, c, m=m: torch.no_grad()(hf_generate)(m, p, n, c, True)
    theirs = hf_models["transformers"]
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    bw = Bandwidth(args.device, args.bandwidth_gib)
    bandwidth = bw.sample()
    floor = bandwidth * 1e9 / weight_bytes
    prompt = torch.randint(100, 1000, (args.prompt_len,), generator=torch.Generator().manual_seed(1)).tolist()

    results = {"env": env(args), "shape": args.shape, "weight_bytes": weight_bytes,
               "bandwidth_gbs": round(bandwidth, 2),
               "bandwidth_measure": "device-to-device copy" if args.device == "cuda" else "torch.sum (read)",
               "floor_tokens_per_s": round(floor, 2), "decode": [], "prefill": []}
    print(f"{args.shape} ({args.dtype}, {args.device}): {weight_bytes / 2**20:.0f} MiB of weights; bandwidth "
          f"{bandwidth:.1f} GB/s -> decode floor {floor:.1f} tok/s (batch 1)")
    for mode in [m for m in args.modes.split(",") if m]:
        use_cache = mode == "cache"
        active = {k: fn for k, fn in runners.items() if use_cache or k not in ("attncli[compile]", "transformers[static]")}
        rates: dict[str, list[float]] = {k: [] for k in active}
        tokens: dict[str, list[int]] = {}
        for name, fn in active.items():  # warm-up (and compile), excluded
            fn(prompt, 4, use_cache)
        for i in range(args.repeats):
            order = list(active.items())
            for name, fn in (order if i % 2 == 0 else order[::-1]):  # A B, B A: drift favours no runner
                rate, toks = decode_rate(fn, prompt, args.new, use_cache)
                rates[name].append(rate)
                tokens[name] = toks
            bw.sample()
        floor = bw.median * 1e9 / weight_bytes
        med = {k: statistics.median(v) for k, v in rates.items()}
        same = {k: t == tokens["transformers"] for k, t in tokens.items() if k != "transformers"}
        ours_names = [k for k in med if k.startswith("attncli")]
        row = {"mode": mode, **{f"{k}_tokens_per_s": round(v, 2) for k, v in med.items()},
               "floor_tokens_per_s": round(floor, 2),
               "ratio": round(med["attncli"] / med["transformers"], 3),
               "attncli_share_of_floor": round(med["attncli"] / floor, 3),
               "ratios": {k: round(med[k] / med["transformers"], 3) for k in ours_names},
               "share_of_floor": {k: round(med[k] / floor, 3) for k in ours_names},
               "identical_greedy_tokens": all(same.values()), "identical_by_runner": same,
               "repeats": {k: [round(r, 2) for r in v] for k, v in rates.items()}}
        results["decode"].append(row)
        others = "".join(f" | {k} {v:7.1f} ({med[k] / med['transformers']:.2f}x)" for k, v in med.items()
                         if k not in ("attncli", "transformers"))
        print(f"decode {mode:8s} attncli {med['attncli']:7.1f} tok/s | transformers {med['transformers']:7.1f} tok/s"
              f"{others} | ratio {row['ratio']:.2f}x | {100 * row['attncli_share_of_floor']:.0f}% of floor"
              f" ({floor:.0f} tok/s at {bw.median:.1f} GB/s)"
              f" | identical tokens: {all(same.values())}")
    for t in [int(x) for x in args.prefill.split(",") if x]:
        ids = torch.randint(100, 1000, (1, t), generator=torch.Generator().manual_seed(t)).to(args.device)
        run = {name: (lambda m=m: m(ids, last_only=True)) for name, m in prefill_models.items()}
        run["transformers"] = lambda: theirs(ids, logits_to_keep=1)
        lat: dict[str, list[float]] = {k: [] for k in run}
        with torch.inference_mode():
            for fn in run.values():
                fn()
            for i in range(args.prefill_repeats):
                # A B, B A, A B...: a host slowing down (or a cache warmed by the other) favours neither
                for name in (run if i % 2 == 0 else reversed(run)):
                    lat[name].append(_timed(run[name]))
        med = {k: statistics.median(v) for k, v in lat.items()}
        row = {"seq_len": t, **{f"{k}_ms": round(v * 1e3, 2) for k, v in med.items()},
               "ratio": round(med["transformers"] / med["attncli"], 3),
               "ratios": {k: round(med["transformers"] / med[k], 3) for k in prefill_models}}
        results["prefill"].append(row)
        others = "".join(f" | {k} {med[k] * 1e3:8.1f} ({row['ratios'][k]:.2f}x)" for k in prefill_models if k != "attncli")
        print(f"prefill T={t:5d} attncli {row['attncli_ms']:8.1f} ms | transformers {row['transformers_ms']:8.1f} ms{others}"
              f" | speed ratio {row['ratio']:.2f}x")
    finish(results, bw, weight_bytes, args.out)
    return results


def finish(results: dict, bw: Bandwidth, weight_bytes: int, out: Path | None) -> None:
    """The floor over the whole run (the median of every bandwidth sample) into ``results``,
    then ``results`` written to ``out`` as JSON, never half-written."""
    results["bandwidth_gbs"] = round(bw.median, 2)
    results["bandwidth_samples_gbs"] = [round(x, 1) for x in bw.samples]
    results["floor_tokens_per_s"] = round(bw.median * 1e9 / weight_bytes, 2)
    if out:
        write_json(out, results)


def write_json(out: Path, doc: dict) -> None:
    from attncli.atomic import write_text_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(doc, indent=2, default=str) + "\n")
    print(f"wrote {out}")


def env(args) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        commit = None
    import transformers

    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    return {"device": device, "cpu": platform.processor() or platform.machine(), "threads": args.threads,
            "torch": torch.__version__, "transformers": transformers.__version__, "dtype": args.dtype,
            "commit": commit, "batch": 1, "prompt_len": args.prompt_len, "new_tokens": args.new}


if __name__ == "__main__":
    main()
