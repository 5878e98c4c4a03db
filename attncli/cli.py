"""The `attncli` command: parse, call the library, render. No tensor code here.

Library errors are translated once, in ``main``: one line on stderr and the exit
code of shared/CLI.md (1 runtime failure, 2 bad usage or input, 130 Ctrl-C).
Heavy imports (torch) happen inside commands so that `attncli --help` is instant.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import click
import typer



from attncli import __version__
from attncli.errors import AttncliError, NotImplementedYetError


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
AttnOpt = typer.Option("sdpa", "--attn", help="Attention backend: eager | sdpa.")

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"attncli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    pass


def model_path(model: Optional[str]) -> str:
    from attncli.loading import default_model_path

    return model or str(default_model_path())


def _not_yet(command: str, issue: int) -> None:
    raise NotImplementedYetError(f"`attncli {command}` is not implemented yet (issue #{issue})")


@app.command(context_settings=_PASS_THROUGH)
def generate(ctx: typer.Context) -> None:
    """Generate text, streamed, with or without a KV cache (not implemented yet)."""
    _not_yet("generate", 3)


@app.command("inspect-mask", context_settings=_PASS_THROUGH)
def inspect_mask(ctx: typer.Context) -> None:
    """Show the attention masks a model applies (not implemented yet)."""
    _not_yet("inspect-mask", 4)


@app.command(context_settings=_PASS_THROUGH)
def profile(ctx: typer.Context) -> None:
    """Sweep sequence length and measure latency and memory (not implemented yet)."""
    _not_yet("profile", 5)


@app.command()
def info(
    model: Optional[str] = ModelOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    context: Optional[int] = typer.Option(None, "--context", min=1, help="Context length for the memory estimate (default: the model's)."),
    batch: int = typer.Option(1, "--batch", min=1, help="Batch size for the KV-cache estimate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Architecture, sizes, KV-cache cost and memory needed at a context length."""
    from attncli import render
    from attncli.info import model_info
    from attncli.loading import inspect_checkpoint, resolve_device, resolve_dtype

    path = model_path(model)
    cfg, files, plan = inspect_checkpoint(path)  # validates names and shapes, reads no weights
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, cfg.dtype, dev)
    result = model_info(cfg, dtype=dt, context=context, batch=batch)
    result["model"] = str(files.folder)
    result["checkpoint_files"] = len(plan.files)
    result["checkpoint_bytes"] = plan.checkpoint_bytes
    if as_json:
        render.print_json(result)
    else:
        render.out.print(render.info_table(result, title=f"{files.folder}"))


# ---- entry point ----
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used by the console script)."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="attncli", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except AttncliError as err:
        return _fail(str(err), err.exit_code)
    except _EXIT as exc:
        return exc.exit_code
    except _USAGE as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            typer.echo(exc.ctx.get_help())  # bare `attncli`: help, not an error
            return 0
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        return _fail(exc.format_message() + hint, 2)
    except _ABORT:
        return _fail("interrupted", 130)
    except Exception as exc:  # a bug: say so plainly, traceback only on request
        if os.environ.get("ATTNCLI_DEBUG"):
            raise
        return _fail(f"internal error: {exc.__class__.__name__}: {exc} (set ATTNCLI_DEBUG=1 for a traceback)", 1)


def _fail(message: str, code: int) -> int:
    from attncli import render

    if os.environ.get("ATTNCLI_DEBUG") and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    render.error_line(" ".join(message.split()))
    return code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
