"""One prepared device check: correctness and speed of attncli on a GPU, in one command (<= 8 min on an H200).

    python examples/gpu_check.py                      # on the GPU machine, from the repository root
    python examples/gpu_check.py --device cpu --quick # tiny shapes end to end (CI: it cannot rot)

Runs from the copied tree (the repository root is put on sys.path; nothing is installed) and
needs torch, transformers, typer, rich, safetensors, tokenizers and psutil. Every section is
recorded, pass or fail, and the run goes on: a device session is one command, not exploration.
  parity     bf16/fp16 (float32 too with --quick) greedy tokens against transformers, per family
  compile    eager vs --compile tokens; CUDA graphs recorded, not skipped (inductor's counter)
  syncs      host syncs per decode step (CUDA's sync debug mode): the token's own, no more
  kernels    which attention kernel each call ran (profiler names), prefill and decode, sdpa/flex
  check      `inspect-mask --check` on a padded batch in the run dtype: exit 0, no NaN
  decode     llama-3.2-1b shape: attncli eager / --compile vs transformers, share of the floor
             (examples/bench_vs_transformers.py)
  profile    a quadratic prefill sweep to T = 8,192 with sdpa and flex (`attncli profile`)
  load       attncli's load to the device vs safetensors.torch.load_file
Writes profiles/results/<device>-gpu-check.json (and <device>-quadratic.json), then prints a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

import bench_vs_transformers as bvt  # noqa: E402  (a sibling script: shapes, runners, the JSON writer)
import torch  # noqa: E402

FAMILIES = {  # tiny random checkpoints, built here (model_type, config overrides)
    "llama": ("llama", dict(num_key_value_heads=2)),
    "qwen3": ("qwen3", dict(num_key_value_heads=2, head_dim=16)),
    "gemma2": ("gemma2", dict(num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=8)),
    "gpt2": ("gpt2", None),
    "mistral": ("mistral", dict(num_key_value_heads=2, sliding_window=8)),  # windowed decode reads W keys
}
BASE = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=256, tie_word_embeddings=False)
GPT2 = dict(vocab_size=256, n_positions=256, n_embd=64, n_layer=2, n_head=4)


def save_tiny(name: str, folder: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, extra = FAMILIES[name]
    cfg = GPT2 if extra is None else dict(BASE, **extra)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg)).save_pretrained(folder / name)
    return folder / name


def tiny(name: str, folder: Path) -> Path:
    """The tiny checkpoint of ``name`` in ``folder``, saved by an earlier section or now."""
    return folder / name if (folder / name).exists() else save_tiny(name, folder)


def greedy_ours(folder, device, dtype, prompts, new, compile=False):
    from attncli.checkpoint.load import load_model
    from attncli.generate.loop import generate

    gen = generate(load_model(folder, device=device, dtype=dtype).model, prompts, max_new_tokens=new, compile=compile)
    for _ in gen:
        pass
    return [r.tokens for r in gen.rows]


def greedy_hf(folder, device, dtype, prompts, new):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).to(device).eval()
    out = []
    for p in prompts:  # one row at a time: no padding on the reference side
        ids = torch.tensor([p], device=device)
        with torch.no_grad():
            g = m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                           do_sample=False, pad_token_id=0, eos_token_id=None)
        out.append(g[0, len(p):].tolist())
    return out


def first_mismatch(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None


def sec_parity(args, tmp):
    prompts = [[5, 17, 42, 9, 77, 31], [7, 8, 9]]
    dtypes = ["float32", "bfloat16"] if args.quick else ["bfloat16", "float16"]
    rows = {}
    for fam in FAMILIES:
        folder = save_tiny(fam, tmp)
        for dt in dtypes:
            ours = greedy_ours(folder, args.device, dt, prompts, args.new)
            ref = greedy_hf(folder, args.device, dt, prompts, args.new)
            rows[f"{fam}/{dt}"] = {"equal": ours == ref,
                                   "first_mismatch": [first_mismatch(a, b) for a, b in zip(ours, ref)]}
    return {"ok": all(r["equal"] for r in rows.values()), "rows": rows}


def sec_compile(args, tmp):
    from torch._dynamo.utils import counters

    folder = tiny("llama", tmp)
    prompts = [[5, 17, 42, 9, 77, 31], [7, 8, 9]]
    dt = "float32" if args.quick else "bfloat16"
    eager = greedy_ours(folder, args.device, dt, prompts, args.new)
    skips_before = counters["inductor"]["cudagraph_skips"]
    from attncli.checkpoint.load import load_model
    from attncli.generate.loop import generate

    model = load_model(folder, device=args.device, dtype=dt).model
    runs = []
    for _ in range(2):  # the second generation reuses the step's cache and graph: no new compile
        gen = generate(model, prompts, max_new_tokens=args.new, compile=True)
        for _ in gen:
            pass
        runs.append(([r.tokens for r in gen.rows], gen.stats))
    compiled, stats = runs[0]
    skips = counters["inductor"]["cudagraph_skips"] - skips_before
    on_cuda = args.device.startswith("cuda")
    return {"ok": eager == compiled == runs[1][0] and (skips == 0 or not on_cuda), "tokens_equal": eager == compiled,
            "cudagraph_skips": skips, "cuda_graphs_expected": on_cuda, "compile_s": round(stats.compile_s, 2),
            "second_run_compile_s": round(runs[1][1].compile_s, 3), "kernels": stats.attn_kernels,
            "decode_tokens_per_s": stats.tokens_per_s}


def sec_syncs(args, tmp):
    """Host syncs per decode step, counted by CUDA's sync debug mode: one is the token itself
    (it must reach the host to stream it and to see an EOS); anything more is a stall."""
    import warnings

    from attncli.checkpoint.load import load_model
    from attncli.generate.loop import generate

    if not args.device.startswith("cuda"):
        return {"ok": True, "skipped": "CUDA's sync debug mode needs a GPU"}
    model = load_model(tiny("llama", tmp), device=args.device, dtype="bfloat16").model
    found = {}
    for compile_step in (False, True):
        list(generate(model, [[5, 17, 42]], max_new_tokens=4, compile=compile_step))  # warm (compiles)
        gen = generate(model, [[5, 17, 42]], max_new_tokens=17, compile=compile_step)
        it = iter(gen)
        next(it)  # the prefill and its token: not a decode step
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                steps = sum(1 for _ in it)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
        found["compiled" if compile_step else "eager"] = {"steps": steps, "syncs": syncs,
                                                           "per_step": round(syncs / max(steps, 1), 2)}
    return {"ok": all(v["per_step"] <= 1.0 for v in found.values()), **found}


def sec_kernels(args, tmp):
    from torch.profiler import ProfilerActivity, profile

    from attncli.checkpoint.load import load_model
    from attncli.model.cache import KVCache

    from attncli.model.attention.kernels import recording

    dt = "float32" if args.quick else "bfloat16"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    found, reported = {}, {}
    # (family, backend, phase, padded): the windowed family's decode reads W keys unmasked (flash on
    # CUDA); a padded batch needs a mask (efficient/cudnn); flex is its own kernel
    cases = [("llama", b, ph, False) for b in ("sdpa", "flex") for ph in ("prefill", "decode")]
    cases += [("llama", "sdpa", "decode", True), ("mistral", "sdpa", "decode", False)]
    for fam, backend, phase, padded in cases:
        model = load_model(tiny(fam, tmp), device=args.device, dtype=dt).model
        b = 2 if padded else 1
        cache = KVCache(model.cfg, batch=b, max_len=160, dtype=model.dtype, device=args.device)
        ids = torch.randint(3, 200, (b, 64), device=args.device)
        mask = torch.ones(b, 64, dtype=torch.long, device=args.device)
        if padded:
            mask[1, :20] = 0
        one = mask[:, :1].clone().fill_(1) if padded else None
        with torch.inference_mode():
            model(ids, attention_mask=mask if padded else None, cache=cache, backend=backend, last_only=True)
            if phase == "decode":
                model(ids[:, :1], attention_mask=one, cache=cache, backend=backend, last_only=True)  # warm
            with profile(activities=acts) as prof, recording(model.kernels) as log:
                if phase == "prefill":
                    cache.length = 0
                    model(ids, attention_mask=mask if padded else None, cache=cache, backend=backend, last_only=True)
                else:
                    model(ids[:, :1], attention_mask=one, cache=cache, backend=backend, last_only=True)
        names = {e.key for e in prof.key_averages()
                 if re.search(r"attention|flash|fmha|flex|sdpa|efficient|cudnn|triton_tem|CompiledFxGraph",
                              e.key, re.I)}
        key = f"{fam}/{backend}/{phase}" + ("/padded" if padded else "")
        found[key], reported[key] = sorted(names)[:8], log.name
    return {"ok": all(found.values()) and all(reported.values()), "reported": reported, "kernels": found}


def sec_check(args, tmp):
    from attncli.cli import main as cli

    dt = "float32" if args.quick else "bfloat16"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli(["inspect-mask", "The cat", "Once upon a time there", "--check", "--device", args.device,
                    "--dtype", dt, "--json"])
    text = buf.getvalue()
    docs = json.loads(text) if code == 0 else []
    # the dtype audit shows other methods' NaN rows on purpose; attncli's own must be clean
    ours = [r for d in docs for r in d.get("dtype_audit", []) if r.get("attncli")]
    nan = any("nan" in json.dumps(r).lower() for r in ours)
    failed = [c["name"] for d in docs for c in d.get("checks", []) if c.get("result") not in ("pass", "skipped")]
    return {"ok": code == 0 and not nan and not failed, "exit_code": code, "nan_in_attncli_rows": nan,
            "checks_failed": failed, "audited_rows": len(ours)}


def sec_decode(args, tmp):
    shape = "tiny-llama" if args.quick else "llama-3.2-1b"
    dt = "float32" if args.quick else "bfloat16"
    res = bvt.main(["--shape", shape, "--device", "cpu" if args.quick else "cuda", "--dtype", dt, "--compile",
                    "--hf-attn", "sdpa,eager", "--hf-static", "--modes", "cache", "--repeats", "2" if args.quick else "3",
                    "--new", "16" if args.quick else "128", "--prefill", "", "--bandwidth-gib",
                    "0.01" if args.quick else "1"])
    row = res["decode"][0]
    return {"ok": row["identical_greedy_tokens"], "shape": shape, "dtype": dt, **{k: row[k] for k in row
            if k.endswith("tokens_per_s") or k in ("ratios", "share_of_floor", "identical_by_runner")},
            "bandwidth_gbs": res["bandwidth_gbs"]}


def sec_profile(args, tmp, out_json: Path):
    from attncli.cli import main as cli

    preset = "gpt2" if args.quick else "llama-3.2-1b"
    lens = "32,64" if args.quick else "512,1024,2048,4096,8192"
    code = cli(["profile", "--preset", preset, "--random-weights", "--seq-lens", lens, "--mode", "prefill",
                "--attn", "sdpa,flex", "--device", args.device, "--dtype", "float32" if args.quick else "bfloat16",
                "--repeats", "2", "--out", str(out_json)])
    doc = json.loads(out_json.read_text()) if out_json.exists() else {}
    rows = [{k: r.get(k) for k in ("attn", "seq_len", "latency_ms", "peak_memory_bytes", "kernel", "status")}
            for r in doc.get("rows", [])]
    # the first row absorbs no one-time workspace: within a series, peak memory grows with T
    first_ok = all(a["peak_memory_bytes"] <= b["peak_memory_bytes"] for a, b in zip(rows, rows[1:])
                   if a["attn"] == b["attn"] and a["status"] == b["status"] == "ok")
    # profile --compile: three lengths in two cache buckets, two graphs, rows named by kernel
    compiled_json = out_json.with_name(out_json.stem + "-compiled.json")
    ccode = cli(["profile", "-m", str(tiny("llama", tmp)), "--seq-lens", "40,90,130", "--mode", "decode",
                 "--cache", "on", "--compile", "--device", args.device, "--dtype",
                 "float32" if args.quick else "bfloat16", "--repeats", "3", "--out", str(compiled_json)])
    crows = json.loads(compiled_json.read_text())["rows"] if compiled_json.exists() else []
    compiled_json.unlink(missing_ok=True)
    exact = args.device.startswith("cuda")  # CUDA's allocator counts exactly; the CPU's peak RSS jitters by pages
    return {"ok": code == 0 and all(r["status"] == "ok" for r in rows) and (first_ok or not exact) and ccode == 0,
            "exit_code": code, "first_row_not_inflated": first_ok, "compiled_exit_code": ccode,
            "compiled_rows": [{k: r.get(k) for k in ("seq_len", "latency_ms", "kernel", "compile_s")} for r in crows],
            "rows": rows, "fits": doc.get("fits")}


def sec_load(args, tmp):
    from safetensors.torch import load_file

    from attncli.checkpoint.load import load_model

    shape = "tiny-llama" if args.quick else "llama-3.2-1b"
    folder = tmp / "load"
    bvt.build_checkpoint(shape, folder, torch.float32 if args.quick else torch.bfloat16)
    dev = torch.device(args.device)
    files = sorted(folder.glob("*.safetensors"))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    t = time.perf_counter()
    lm = load_model(folder, device=args.device, dtype="float32" if args.quick else "bfloat16")
    sync()
    ours = time.perf_counter() - t
    del lm
    t = time.perf_counter()
    tensors = [load_file(f, device=str(dev)) for f in files]
    sync()
    theirs = time.perf_counter() - t
    del tensors
    size = sum(f.stat().st_size for f in files)
    return {"ok": True, "bytes": size, "attncli_s": round(ours, 3), "load_file_s": round(theirs, 3),
            "attncli_vs_load_file": round(theirs / ours, 3)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny shapes (the CPU smoke run)")
    ap.add_argument("--new", type=int, default=24, help="greedy tokens per parity run")
    ap.add_argument("--only", default="", help="sections to run, comma-separated (default: all)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "profiles" / "results")
    args = ap.parse_args(argv)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = {"device": name, "torch": torch.__version__, "quick": args.quick, "sections": {}}
    sections = {"parity": sec_parity, "compile": sec_compile, "syncs": sec_syncs, "kernels": sec_kernels,
                "check": sec_check,
                "decode": sec_decode, "load": sec_load,
                "profile": lambda a, t: sec_profile(a, t, args.out_dir / f"{slug}-quadratic.json")}
    chosen = [s for s in args.only.split(",") if s] or list(sections)
    with tempfile.TemporaryDirectory() as tmp:
        for sec in chosen:
            started = time.perf_counter()
            try:
                got = sections[sec](args, Path(tmp))
            except Exception as err:  # noqa: BLE001 - a failed section is a result too
                got = {"ok": False, "error": f"{type(err).__name__}: {err}"[:400],
                       "where": traceback.format_exc().strip().splitlines()[-3:]}
            got["seconds"] = round(time.perf_counter() - started, 1)
            results["sections"][sec] = got
            print(f"[{sec}] {'ok' if got['ok'] else 'FAILED'} in {got['seconds']} s", flush=True)
    print(f"\n{'section':9s} {'result':7s} {'s':>6s}  detail")
    for sec, got in results["sections"].items():
        detail = got.get("error") or ", ".join(f"{k}={v}" for k, v in got.items()
                                               if k not in ("ok", "seconds", "rows", "kernels", "fits", "where"))
        print(f"{sec:9s} {'ok' if got['ok'] else 'FAILED':7s} {got['seconds']:6.1f}  {detail[:200]}")
    bvt.write_json(args.out_dir / f"{slug}-gpu-check.json", results)
    return results


if __name__ == "__main__":
    main()
