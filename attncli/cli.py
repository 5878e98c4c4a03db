"""The `attncli` command: parse, call the library, render. No tensor code here.

Library errors are translated once, in ``main``: one line on stderr and the exit
code of docs/CLI.md (1 runtime failure, 2 bad usage or input, 130 Ctrl-C).
Heavy imports (torch) happen inside commands so that `attncli --help` is instant.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Optional

import click
import typer



from attncli import __version__
from attncli.errors import AttncliError


def _click_classes(name: str) -> tuple[type, ...]:
    """Exception class ``name`` from click and from the copy of click that newer Typer
    releases vendor (typer._click), so both are caught whichever Typer is installed."""
    found = [getattr(click.exceptions, name, None), getattr(typer, name, None)]
    try:
        from typer._click import exceptions as vendored

        found.append(getattr(vendored, name, None))
    except ImportError:  # older Typer uses click itself
        pass
    return tuple({c for c in found if isinstance(c, type)})


# torch warns on import when numpy is absent; attncli does not need numpy, so this is
# noise on the stderr that carries our one-line errors and stats.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

_EXIT = _click_classes("Exit")
_USAGE = _click_classes("UsageError")
_ABORT = (*_click_classes("Abort"), KeyboardInterrupt)


app = typer.Typer(
    name="attncli",
    help="Load, run, inspect and profile decoder-only transformers from safetensors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# ---- shared options (single source of defaults) ----
ModelOpt = typer.Option(
    None, "-m", "--model", envvar="ATTNCLI_MODEL", show_envvar=True,
    help="Hugging Face model folder or a .safetensors file (default: the embedded model).",
)
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps (auto: CUDA if present).")
DtypeOpt = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16 (auto: checkpoint dtype on GPU, float32 on CPU).")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="CPU threads for torch (default: torch's own choice); shown in the stats and the profile's env.")
TpOpt = typer.Option(1, "--tp", help="Tensor parallel over N local processes (torch.distributed: gloo on the CPU, one GPU per rank with NCCL); also runs under torchrun.")
AttnOpt = typer.Option("sdpa", "--attn", help="Attention backend: eager | sdpa | flex (FlexAttention, compiled; compile time reported apart).")



def _version(value: bool) -> None:
    if value:
        typer.echo(f"attncli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    pass


def set_threads(threads: Optional[int]) -> None:
    """--threads N: torch's intra-op threads (a busy shared host runs faster on fewer)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def launch_tp(tp: int, device: str) -> Optional[int]:
    """--tp N: the exit code of the N processes this one started, or None to run here."""
    from attncli.distributed import launch

    return launch.entry(tp, device)


def model_path(model: Optional[str]) -> str:
    from attncli.checkpoint.files import default_model_path

    return model or str(default_model_path())


@app.command()
def generate(
    prompts: Optional[list[str]] = typer.Argument(None, help="Prompt(s); several make one left-padded batch. None: read stdin."),
    prompts_file: Optional[str] = typer.Option(None, "--prompts-file", help="Prompts from a file, one per line or JSON Lines with a \"prompt\" field; - = lines of stdin."),
    model: Optional[str] = ModelOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    threads: Optional[int] = ThreadsOpt,
    attn: str = AttnOpt,
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n", help="New tokens per prompt (at most)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="KV cache; --no-cache re-runs the whole sequence every step."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="0 = greedy."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Sample among the k likeliest tokens."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Sample among the smallest set reaching probability p."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for sampling (same seed, same tokens, same device)."),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="Keep going past end-of-text tokens."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print tokens as they arrive (one prompt)."),
    echo: bool = typer.Option(True, "--echo/--no-echo", help="Print the prompt before its continuation (text output)."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout: one object per prompt, in order."),
    compile_step: bool = typer.Option(False, "--compile", help="torch.compile the decode step (CUDA graphs on a GPU); compile time is reported apart."),
    tp: int = TpOpt,
) -> Optional[int]:
    """Generate text, streamed, with or without a KV cache; stats go to stderr."""
    if (code := launch_tp(tp, device)) is not None:
        return code
    set_threads(threads)
    from attncli.errors import BadInputError
    from attncli.generate import view as gen_view
    from attncli.generate.loop import check_max_new_tokens
    from attncli.generate.sampling import Sampling
    from attncli.generate.text import TextModel, read_prompts
    from attncli.model.attention import check_backend

    if prompts_file is not None:
        if prompts:
            raise BadInputError("give prompts or --prompts-file, not both")
        prompts = read_prompts(prompts_file)
    if not prompts:
        if tp > 1:  # every rank would read its own part of the pipe
            raise BadInputError("with --tp, give the prompts as arguments or in --prompts-file FILE, not on stdin")
        if sys.stdin is None or sys.stdin.isatty():
            raise BadInputError("give a prompt: attncli generate \"The cat sat on the\" (or pipe text on stdin)")
        prompts = [sys.stdin.read().rstrip("\n")]
        if not prompts[0].strip():
            raise BadInputError("stdin was empty: pipe a prompt, or give one as an argument")
    check_backend(attn)
    sampling = Sampling(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    check_max_new_tokens(max_new_tokens)  # before loading: a usage error should not wait for the weights
    tm = TextModel.load(model_path(model), device=device, dtype=dtype)
    gen = tm.start(prompts, max_new_tokens=max_new_tokens, use_cache=cache, sampling=sampling,
                   ignore_eos=ignore_eos, backend=attn, compile=compile_step)
    view = gen_view.GenerationView(tm, gen, prompts, stream=stream and len(prompts) == 1 and not as_json,
                                 echo=echo, as_json=as_json)
    try:
        for step in gen:
            view.step(step)
    except KeyboardInterrupt:
        view.finish(interrupted=True)
        raise
    view.finish()
    gen_view.generation_stats(gen.stats, batch=len(prompts), cache=cache, attn=attn, device=tm.lm.device, dtype=tm.lm.dtype,
                              tp=tm.lm.model.tp)


@app.command("inspect-mask")
def inspect_mask(
    prompts: Optional[list[str]] = typer.Argument(None, help="Prompt(s) for the model; several make one left-padded batch."),
    model: Optional[str] = ModelOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    threads: Optional[int] = ThreadsOpt,
    attn: str = AttnOpt,
    seq_len: Optional[int] = typer.Option(
        None, "--seq-len", min=1,
        help="No model and no prompts: build masks alone over N slots. With -m and no prompts: run N fixed "
             "pseudo-random token ids through the model."),
    kind: Optional[str] = typer.Option(
        None, "--kind",
        help="causal | sliding | padding | full | chunked. Masks alone: the mask to build (default causal; sliding "
             "with --window, padding with --pad, chunked with --chunk). With a model: which layers to show, causal "
             "(full-attention layers), sliding or chunked (default: every kind the model uses)."),
    window: Optional[int] = typer.Option(None, "--window", help="Masks alone: window W of --kind sliding (W keys, the query's own included)."),
    chunk: Optional[int] = typer.Option(None, "--chunk", help="Masks alone: chunk C of --kind chunked (keys in the query's own chunk of C positions)."),
    block_size: int = typer.Option(128, "--block-size", help="Block of the kernel whose view is shown (FlexAttention's: 128)."),
    packed: bool = typer.Option(False, "--packed", help="Pack the prompts into one sequence of documents (positions restart, block-diagonal causal mask)."),
    packed_positions: str = typer.Option("reset", "--packed-positions", help="reset | continuous (the bug: positions run on across documents)."),
    packed_mask: str = typer.Option("document", "--packed-mask", help="document | causal (the bug: no document mask)."),
    pad: int = typer.Option(0, "--pad", help="Masks alone: the first P slots are left padding."),
    layer: Optional[int] = typer.Option(None, "--layer", help="Layer whose mask, scores and weights are shown (default: the first)."),
    head: Optional[int] = typer.Option(None, "--head", help="Head for --scores/--weights (default 0)."),
    scores: bool = typer.Option(False, "--scores", help="Pre-softmax scores, masked entries -inf (null in JSON); runs eager."),
    weights: bool = typer.Option(False, "--weights", help="Post-softmax weights; runs eager."),
    check: bool = typer.Option(
        False, "--check",
        help="Prove no future, out-of-window or padding key gets weight (mask, structural, behavioural, window "
             "edge, dtype audit); exit 1 if a check fails."),
    dump: Optional[str] = typer.Option(
        None, "--dump",
        help="Also write FILE, atomically, by extension: .json (as --json), .csv (a row per query/key cell, masked "
             "scores -inf) or .safetensors (bool masks, float32 scores/weights, tokens in the metadata)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON {tokens, kind, mask, ...} (tokens null at padding, masked scores null); "
                              "a list of those for a batch."),
    fmt: str = typer.Option("table", "--format", help="table | md (--check's table as GitHub markdown) | csv (a row per cell, with layer and head) | json."),
    tp: int = TpOpt,
) -> Optional[int]:
    """Show the attention masks a model really applies (or masks alone), its scores and weights, and prove nothing leaks."""
    if (code := launch_tp(tp, device)) is not None:
        return code
    set_threads(threads)
    from attncli import console
    from attncli.errors import CheckFailedError
    from attncli.formats import check_format
    from attncli.inspect import dumps, render
    from attncli.inspect import run as run_inspect
    from attncli.model.attention import check_backend

    check_backend(attn)
    target = dumps.check_dump_path(dump) if dump else None  # before any model runs
    request = run_inspect.Request(
        prompts=list(prompts or []), model=model, seq_len=seq_len, kind=kind, window=window, chunk=chunk, pad=pad,
        layer=layer, head=head, scores=scores, weights=weights, check=check, block_size=block_size, packed=packed,
        packed_positions=packed_positions, packed_mask=packed_mask, device=device, dtype=dtype, attn=attn)
    report, checks = run_inspect.inspect(request, default_model=model_path)
    render.show(report, checks, check_format(fmt, as_json), width=console.layout_width())
    if target is not None:
        dumps.write_dump(target, report, checks)
        console.err.print(f"wrote {target}", highlight=False, markup=False)
    if checks is not None and not checks.ok:
        raise CheckFailedError(f"inspect-mask --check: {len(checks.failed)} check(s) failed: {', '.join(checks.failed)}")


@app.command()
def profile(
    model: Optional[str] = ModelOpt,
    preset: Optional[str] = typer.Option(None, "--preset", help="A real model's shape by name (see `attncli info --preset help`); needs --random-weights."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Random weights in the model's shape, built on the device: no download."),
    profile_name: Optional[str] = typer.Option(None, "--profile", help="A sweep definition: quadratic, cache, backends, or a path to a .toml file. Flags override it."),
    seq_lens: Optional[str] = typer.Option(None, "--seq-lens", help="Comma-separated lengths, e.g. 128,256,512."),
    max_seq_len: Optional[str] = typer.Option(None, "--max-seq-len", help="Double from 128 up to N (or 'context'); default min(context, 1024)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size (default 1)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="prefill | decode | both (default both)."),
    cache: Optional[str] = typer.Option(None, "--cache", help="Decode with the KV cache: both | on | off (default both)."),
    attn: Optional[str] = typer.Option(None, "--attn", help="Backends, comma-separated: eager,sdpa,flex (default sdpa)."),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="Timed runs per row; the median is reported (default 3)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Untimed runs first (default 1)."),
    out: Optional[str] = typer.Option(None, "--out", help="Write the results as JSON, after every row (atomically)."),
    csv_path: Optional[str] = typer.Option(None, "--csv", help="Write the rows as CSV, after every row (atomically)."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Save a PNG (needs matplotlib: attncli[plot])."),
    compare: Optional[str] = typer.Option(None, "--compare", help="An earlier --out JSON: print new/old latency per row."),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    threads: Optional[int] = ThreadsOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the result document as JSON on stdout instead of tables."),
    compile_step: bool = typer.Option(False, "--compile", help="torch.compile the cached decode step (decode rows with the cache); compile time reported apart."),
    window: Optional[int] = typer.Option(None, "--window", help="Every layer sliding with window W (weights unchanged): compare --attn sdpa,flex."),
    fail_above: Optional[float] = typer.Option(None, "--fail-above", help="With --compare: exit 1 when a matching row is slower than R x the old one."),
    breakdown: bool = typer.Option(False, "--breakdown", help="Time the attention kernels apart from the rest, per row (attn_ms, other_ms) and fit each."),
    fmt: str = typer.Option("table", "--format", help="table | md (GitHub markdown) | csv (rows with model, dtype, device, torch, commit) | json."),
    tp: int = TpOpt,
) -> Optional[int]:
    """Sweep sequence length; measure latency and memory; fit how they grow."""
    if (code := launch_tp(tp, device)) is not None:
        return code
    set_threads(threads)
    from attncli.formats import check_format
    from attncli.profile import run as profile_run

    plan = profile_run.plan(
        model=model, preset=preset, random_weights=random_weights, profile_name=profile_name, seq_lens=seq_lens,
        max_seq_len=max_seq_len, batch=batch, mode=mode, cache=cache, attn=attn, repeats=repeats, warmup=warmup,
        out=out, csv_path=csv_path, plot=plot, compare=compare, device=device, dtype=dtype, compile_step=compile_step,
        window=window, fail_above=fail_above, breakdown=breakdown,
    )
    profile_run.execute(plan, fmt=check_format(fmt, as_json))


@app.command()
def info(
    model: Optional[str] = ModelOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    threads: Optional[int] = ThreadsOpt,
    preset: Optional[str] = typer.Option(None, "--preset", help="A real model's shape by name instead of -m ('help' lists them)."),
    context: Optional[int] = typer.Option(None, "--context", min=1, help="Context length for the memory estimate (default: the model's)."),
    batch: int = typer.Option(1, "--batch", min=1, help="Batch size for the KV-cache estimate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    fmt: str = typer.Option("table", "--format", help="table | md (GitHub markdown) | csv (one row, the JSON keys as header) | json."),
    tp: int = typer.Option(1, "--tp", min=1, help="Also what each of N tensor-parallel ranks holds (nothing is launched)."),
) -> None:
    """Architecture, sizes, KV-cache cost and memory needed at a context length."""
    set_threads(threads)
    from attncli import console
    from attncli.errors import BadInputError
    from attncli.formats import check_format
    from attncli.model.summary import model_info
    from attncli.checkpoint.files import display_name
    from attncli.checkpoint.load import inspect_checkpoint
    from attncli.model.build import resolve_device, resolve_dtype

    if preset is not None and model is not None:
        raise BadInputError("give -m PATH or --preset NAME, not both")
    if preset == "help":
        from attncli.model.presets import preset_table

        console.out.print(preset_table())
        return
    if preset is not None:
        from attncli.model.presets import preset_config, preset_source

        cfg = preset_config(preset)
        title = f"preset {preset} ({preset_source(preset)})"
    else:
        cfg, files, plan = inspect_checkpoint(model_path(model))  # validates names and shapes, reads no weights
        title = display_name(files.folder)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, cfg.dtype, dev)
    if context is not None and context > cfg.context_length and not cfg.fully_windowed:
        console.err.print(f"warning: --context {context:,} is past the model's context of {cfg.context_length:,} "
                          "tokens: it cannot run that long; the memory shown is for the length asked", highlight=False)
    result = model_info(cfg, dtype=dt, context=context, batch=batch, tp=tp)
    if preset is not None:
        result["model"] = f"preset:{preset}"
    else:
        result.update(model=str(files.folder), checkpoint_files=len(plan.files), checkpoint_bytes=plan.checkpoint_bytes,
                      not_loaded=plan.not_loaded(cfg))
    console.show_info(result, title, check_format(fmt, as_json))


# ---- entry point ----
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used by the console script)."""
    from attncli.distributed import launch

    launch.ARGV = list(argv if argv is not None else sys.argv[1:])  # what --tp N relaunches
    launch.quiet_secondary()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="attncli", standalone_mode=False)
        code = result if isinstance(result, int) else 0
        if code == 130:  # Typer returns (or raises, below) 130 for a KeyboardInterrupt
            return _fail("interrupted (Ctrl-C)", 130)
        return code
    except AttncliError as err:
        return _fail(str(err), err.exit_code)
    except _EXIT as exc:
        if exc.exit_code == 130:  # Typer turns KeyboardInterrupt into Exit(130)
            return _fail("interrupted (Ctrl-C)", 130)
        return exc.exit_code
    except _USAGE as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            typer.echo(exc.ctx.get_help())  # bare `attncli`: help, not an error
            return 0
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        return _fail(exc.format_message() + hint, 2)
    except _ABORT:
        return _fail("interrupted (Ctrl-C)", 130)
    except Exception as exc:  # a bug: say so plainly, traceback only on request
        if os.environ.get("ATTNCLI_DEBUG"):
            raise
        if _out_of_memory(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return _fail(f"out of memory: {first[:160]} (try a shorter context, a smaller batch or --dtype bfloat16)", 1)
        return _fail(f"internal error: {exc.__class__.__name__}: {exc} (set ATTNCLI_DEBUG=1 for a traceback)", 1)


def _out_of_memory(exc: BaseException) -> bool:
    if "torch" not in sys.modules:  # failed before torch was loaded: not an allocation
        return False
    from attncli.memory import is_oom

    return is_oom(exc)


def _fail(message: str, code: int) -> int:
    from attncli import console

    if os.environ.get("ATTNCLI_DEBUG") and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    from attncli.distributed.launch import secondary_error

    if not secondary_error(" ".join(message.split()), code):
        console.error_line(" ".join(message.split()))
    return code


def run() -> None:
    code = main()
    from attncli.distributed.env import launched_world

    if launched_world() > 1:  # a rank: leave without interpreter teardown, which can race the group's
        sys.stdout.flush()  # threads and abort the rank after its work is done (seen once in CI)
        sys.stderr.flush()
        from attncli.distributed.group import shutdown

        shutdown()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
