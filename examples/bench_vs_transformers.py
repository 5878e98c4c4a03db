"""attncli against transformers on one real-shaped random checkpoint, in one process, interleaved.

    python examples/bench_vs_transformers.py --shape gpt2 --repeats 3
    python examples/bench_vs_transformers.py --shape smollm-135m --out profiles/results/bench-smollm.json

Decode rate is measured the same way for both, as llama-bench's tg does: the time of a
128-new-token greedy run minus the time of a 1-new-token run (prefill + first token), over
127 tokens. Runs alternate attncli / transformers so that a host slowing down mid-way hits
both. Greedy tokens are compared, since a speed-up that changes the output is no speed-up.
The bandwidth floor is measured here: tokens/s <= read bandwidth / weight bytes.
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
}


def read_bandwidth_gbs(gib: float = 1.0, repeats: int = 5) -> float:
    x = torch.ones(int(gib * 2**30 / 4))
    x.sum()
    best = min(_timed(lambda: x.sum()) for _ in range(repeats))
    return x.numel() * 4 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build_checkpoint(shape: str, folder: Path):
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, cfg = SHAPES[shape]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=torch.float32)
    model.save_pretrained(folder)


def ours_generate(model, prompt, new, use_cache):
    from attncli.generate import generate

    gen = generate(model, [prompt], max_new_tokens=new, use_cache=use_cache)
    for _ in gen:
        pass
    return gen.rows[0].tokens


def hf_generate(model, prompt, new, use_cache):
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                         do_sample=False, use_cache=use_cache, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def decode_rate(fn, prompt, new, use_cache) -> tuple[float, list[int]]:
    t_one = _timed(lambda: fn(prompt, 1, use_cache))
    tokens = []
    t_all = _timed(lambda: tokens.extend(fn(prompt, new, use_cache)))
    return (new - 1) / max(t_all - t_one, 1e-9), tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="gpt2")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="cache,nocache")
    ap.add_argument("--prefill", default="128,512,1024", help="prefill lengths to time ('' to skip)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    ap.add_argument("--also-layout", default="", help="also time attncli with this weight layout (e.g. out_in)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from attncli.loading import load_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_checkpoint(args.shape, folder)
        ours = load_model(folder, device="cpu").model
        alt = load_model(folder, device="cpu", layout=args.also_layout).model if args.also_layout else None
        theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    theirs.generation_config.eos_token_id = None
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    bandwidth = read_bandwidth_gbs()
    floor = bandwidth * 1e9 / weight_bytes
    prompt = torch.randint(100, 1000, (args.prompt_len,), generator=torch.Generator().manual_seed(1)).tolist()

    runners = {
        "attncli": lambda p, n, c: ours_generate(ours, p, n, c),
        "transformers": lambda p, n, c: torch.no_grad()(hf_generate)(theirs, p, n, c),
    }
    if alt is not None:
        runners[f"attncli[{args.also_layout}]"] = lambda p, n, c: ours_generate(alt, p, n, c)
    results = {"env": env(args), "shape": args.shape, "weight_bytes": weight_bytes,
               "read_bandwidth_gbs": round(bandwidth, 2), "floor_tokens_per_s": round(floor, 2), "decode": [], "prefill": []}
    print(f"{args.shape}: {weight_bytes / 2**20:.0f} MiB of weights; read bandwidth {bandwidth:.1f} GB/s "
          f"-> decode floor {floor:.1f} tok/s (batch 1)")
    for mode in [m for m in args.modes.split(",") if m]:
        use_cache = mode == "cache"
        rates: dict[str, list[float]] = {k: [] for k in runners}
        tokens: dict[str, list[int]] = {}
        for name, fn in runners.items():  # warm-up, excluded
            fn(prompt, 4, use_cache)
        for _ in range(args.repeats):
            for name, fn in runners.items():
                rate, toks = decode_rate(fn, prompt, args.new, use_cache)
                rates[name].append(rate)
                tokens[name] = toks
        med = {k: statistics.median(v) for k, v in rates.items()}
        same = all(t == tokens["transformers"] for t in tokens.values())
        row = {"mode": mode, **{f"{k}_tokens_per_s": round(v, 2) for k, v in med.items()},
               "transformers_tokens_per_s": round(med["transformers"], 2),
               "ratio": round(med["attncli"] / med["transformers"], 3),
               "attncli_share_of_floor": round(med["attncli"] / floor, 3),
               "identical_greedy_tokens": same, "repeats": {k: [round(r, 2) for r in v] for k, v in rates.items()}}
        results["decode"].append(row)
        others = "".join(f" | {k} {v:7.1f}" for k, v in med.items() if k not in ("attncli", "transformers"))
        print(f"decode {mode:8s} attncli {med['attncli']:7.1f} tok/s | transformers {med['transformers']:7.1f} tok/s"
              f"{others} | ratio {row['ratio']:.2f}x | {100 * row['attncli_share_of_floor']:.0f}% of floor"
              f" | identical tokens: {same}")
    for t in [int(x) for x in args.prefill.split(",") if x]:
        ids = torch.randint(100, 1000, (1, t), generator=torch.Generator().manual_seed(t))
        lat: dict[str, list[float]] = {"attncli": [], "transformers": []}
        with torch.inference_mode():
            ours(ids)
            theirs(ids)
            for _ in range(args.repeats):
                lat["attncli"].append(_timed(lambda: ours(ids, last_only=True)))
                lat["transformers"].append(_timed(lambda: theirs(ids, logits_to_keep=1)))
        med = {k: statistics.median(v) for k, v in lat.items()}
        row = {"seq_len": t, "attncli_ms": round(med["attncli"] * 1e3, 2),
               "transformers_ms": round(med["transformers"] * 1e3, 2),
               "ratio": round(med["transformers"] / med["attncli"], 3)}
        results["prefill"].append(row)
        print(f"prefill T={t:5d} attncli {row['attncli_ms']:8.1f} ms | transformers {row['transformers_ms']:8.1f} ms"
              f" | speed ratio {row['ratio']:.2f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        tmp.replace(args.out)
        print(f"wrote {args.out}")


def env(args) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        commit = None
    import transformers

    return {"device": "cpu", "cpu": platform.processor() or platform.machine(), "threads": args.threads,
            "torch": torch.__version__, "transformers": transformers.__version__, "dtype": "float32",
            "commit": commit, "batch": 1, "prompt_len": args.prompt_len, "new_tokens": args.new}


if __name__ == "__main__":
    main()
