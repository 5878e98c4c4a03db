"""`attncli profile` end to end: resolve options (profile file, then flags, then defaults),
refuse bad input before any work, build or load the model, run the sweep with a progress
bar, save results after every row, render. attncli.profile.sweep does the measuring."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attncli.atomic import check_output_path, write_atomic, write_text_atomic
from attncli.errors import BadInputError, CheckFailedError
from attncli.profile.compare import mismatches, pairs, slower_than
from attncli.profile.document import environment, model_summary, result_document
from attncli.profile.spec import MODES, SweepSpec, check_spec, doubling, load_profile, parse_choice, parse_seq_lens
from attncli.model.attention.backends import BACKENDS
from attncli.profile.sweep import Row, check_fits, run_sweep, warm_up

CACHE_CHOICES = {"both": (True, False), "on": (True,), "off": (False,)}
DEFAULT_MAX_SEQ_LEN = 1024


@dataclass
class Plan:
    model: Any  # Transformer
    name: str
    random_weights: bool
    spec: SweepSpec
    out: Path | None
    csv_path: Path | None
    plot: Path | None
    compare: dict[str, Any] | None
    compare_name: str | None
    fail_above: float | None = None


def _pick(flag: Any, profile: dict[str, Any], key: str, default: Any) -> Any:
    return flag if flag is not None else profile.get(key, default)


def plan(*, model: str | None, preset: str | None, random_weights: bool, profile_name: str | None,
         seq_lens: str | None, max_seq_len: str | None, batch: int | None, mode: str | None, cache: str | None,
         attn: str | None, repeats: int | None, warmup: int | None, out: str | None, csv_path: str | None,
         plot: str | None, compare: str | None, device: str, dtype: str, compile_step: bool = False,
         window: int | None = None, fail_above: float | None = None, breakdown: bool = False) -> Plan:
    """Every check that needs no model first (cheap, before a possibly long build)."""
    prof = load_profile(profile_name) if profile_name else {}
    mode_v = str(_pick(mode, prof, "mode", "both"))
    modes = MODES if mode_v == "both" else parse_choice(mode_v, MODES + ("both",), "--mode")
    cache_v = str(_pick(cache, prof, "cache", "both"))
    if cache_v not in CACHE_CHOICES:
        raise BadInputError(f"--cache: unknown value {cache_v!r}; choose from both, on, off")
    attns = parse_choice(str(_pick(attn, prof, "attn", "sdpa")), BACKENDS, "--attn")
    window = _pick(window, prof, "window", None)
    if window is not None and int(window) < 1:
        raise BadInputError(f"--window must be at least 1, got {window}")
    out_p = check_output_path(out, flag="--out", suffixes=(".json",)) if out else None
    csv_p = check_output_path(csv_path, flag="--csv", suffixes=(".csv",)) if csv_path else None
    plot_p = None
    if plot:
        from attncli.profile.plot import require_matplotlib

        plot_p = check_output_path(plot, flag="--plot", suffixes=(".png",))
        require_matplotlib()
    old, old_name = (_read_compare(compare), Path(compare).name) if compare else (None, None)
    if fail_above is not None and (compare is None or not fail_above > 0):
        raise BadInputError("--fail-above R needs --compare OLD.json and R > 0 (e.g. 1.10: fail when 10% slower)")
    if seq_lens is not None and not seq_lens.strip(","):
        raise BadInputError("--seq-lens is empty: give lengths, e.g. --seq-lens 128,256,512")
    if cache is not None and mode_v == "prefill":
        raise BadInputError(f"--cache {cache} applies to decode rows, and --mode prefill has none")
    if preset and model:
        raise BadInputError("give -m PATH or --preset NAME, not both")
    if preset:
        from attncli.model.presets import preset_config

        preset_config(preset)  # an unknown name is the first thing to say
    if preset and not random_weights:
        raise BadInputError(f"--preset {preset} has no weights to load: add --random-weights")
    lens_text = seq_lens if seq_lens is not None else prof.get("seq_lens")
    lens = parse_seq_lens(",".join(map(str, lens_text)) if isinstance(lens_text, list) else lens_text) if lens_text else None
    max_v = _pick(max_seq_len, prof, "max_seq_len", None)
    if lens is None and max_v not in (None, "context"):
        try:
            max_v = int(max_v)
        except ValueError:
            raise BadInputError(f"--max-seq-len must be an integer or 'context', got {max_v!r}") from None
        doubling(max_v)  # validates
    cfg = _config(model, preset, None if window is None else int(window))
    context = cfg.context_length
    if lens is None:
        lens = doubling(context if max_v == "context" else (max_v or min(context, DEFAULT_MAX_SEQ_LEN)))
    spec = SweepSpec(seq_lens=lens, batch=int(_pick(batch, prof, "batch", 1)), modes=tuple(modes),
                     caches=CACHE_CHOICES[cache_v], attns=tuple(attns),
                     repeats=int(_pick(repeats, prof, "repeats", 3)), warmup=int(_pick(warmup, prof, "warmup", 1)),
                     compile=compile_step, breakdown=breakdown)
    from attncli.model.build import resolve_device, resolve_dtype

    dev = resolve_device(device)
    check_fits(cfg, resolve_dtype(dtype, cfg.dtype, dev), dev, spec, f"--preset {preset}" if preset else "the model")
    the_model, name = _build(model, preset, random_weights, device, dtype, None if window is None else int(window))
    check_spec(spec, the_model)
    return Plan(the_model, name, random_weights or bool(preset), spec, out_p, csv_p, plot_p, old, old_name, fail_above)


def _read_compare(path: str) -> dict[str, Any]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise BadInputError(f"--compare {path}: no such file")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInputError(f"--compare {path}: not valid JSON ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise BadInputError(f"--compare {path}: not an attncli profile result (no rows)")
    return doc


def _config(model: str | None, preset: str | None, window: int | None):
    """The config the run will build, read without building anything."""
    from attncli.checkpoint.files import default_model_path
    from attncli.checkpoint.load import load_config

    if preset:
        from attncli.model.presets import preset_config

        cfg = preset_config(preset)
    else:
        cfg, _ = load_config(model or default_model_path())
    return cfg if window is None else cfg.windowed_everywhere(window)


def _build(model: str | None, preset: str | None, random_weights: bool, device: str, dtype: str,
           window: int | None = None):
    """``window``: every layer sliding with that window (weights unchanged), the knob that
    shows what a kernel gains from skipping blocks."""
    from attncli.checkpoint.files import default_model_path, display_name
    from attncli.checkpoint.load import load_config, load_model
    from attncli.model.build import build_model, resolve_dtype

    changes = None if window is None else {"sliding_window": window}
    if preset:
        from attncli.model.presets import preset_config

        cfg, name = preset_config(preset), preset
    elif random_weights:
        cfg, files = load_config(model or default_model_path())
        name = display_name(files.folder)
    else:
        lm = load_model(model or default_model_path(), device=device, dtype=dtype, config_changes=changes)
        return lm.model, display_name(lm.files.folder) + ("" if window is None else f" (every layer window {window})")
    if window is not None:
        cfg = cfg.windowed_everywhere(window)
        name += f" (every layer window {window})"
    from attncli.distributed.group import place

    tp, dev = place(cfg, device)  # random weights under --tp: each rank its own random part (timing, not tokens)
    return build_model(cfg, device=dev, dtype=resolve_dtype(dtype, cfg.dtype, dev), random_weights=True, tp=tp), name


def save(plan_: Plan, doc: dict[str, Any]) -> None:
    if plan_.out:
        write_text_atomic(plan_.out, json.dumps(doc, indent=1) + "\n")
    if plan_.csv_path:
        write_atomic(plan_.csv_path, lambda tmp: _csv(doc["rows"], tmp))


_SETUP = [("model", "name"), ("model", "dtype"), ("env", "device"), ("env", "device_name"), ("env", "torch"),
          ("env", "commit")]
_ROW_FIELDS = [k for k in Row.__dataclass_fields__ if k != "timings_ms"]


def csv_rows(doc: dict[str, Any]) -> str:
    """Every row with the setup it ran in (model, dtype, device, torch, commit): rows of
    several runs concatenate into one table that still says which is which."""
    from attncli.formats import csv_text

    setup = [doc[where][key] for where, key in _SETUP]
    return csv_text([f"{where}_{key}" if key == "name" else key for where, key in _SETUP] + _ROW_FIELDS,
                    [setup + [r.get(k) for k in _ROW_FIELDS] for r in doc["rows"]])


def _f(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def markdown_doc(doc: dict[str, Any]) -> str:
    """The run as GitHub markdown: the setup, a table per mode, the fits."""
    from attncli.formats import markdown
    from attncli.profile.sweep import series_key, series_label

    m, e = doc["model"], doc["env"]
    parts = [f"{m['name']} ({m['architecture']}, {m['parameters']:,} parameters, {m['dtype']}) on {e['device_name']} "
             f"({e['device']}, {e['threads']} threads), torch {e['torch']}, commit {e['commit']}\n"]
    cols = ["series", "T", "latency ms", "min ms", "max ms", "tok/s", "peak mem B", "attn ms", "other ms", "status"]
    for mode in ("prefill", "decode"):
        sel = [r for r in doc["rows"] if r["mode"] == mode]
        if sel:
            parts.append(markdown(cols, [[series_label(series_key(r)), r["seq_len"], _f(r["latency_ms"], ".2f"),
                                          _f(r["latency_min_ms"], ".2f"), _f(r["latency_max_ms"], ".2f"),
                                          _f(r["tokens_per_s"], ",.1f"), r["peak_memory_bytes"], _f(r.get("attn_ms"), ".2f"),
                                          _f(r.get("other_ms"), ".2f"), r["status"]] for r in sel], title=mode))
    parts.append(markdown(["series", "metric", "k (log-log)", "a", "b", "c", "points"],
                          [[series_label((f["mode"], f["cache"], f["attn"], f["batch"])), f["metric"], _f(f["exponent"], ".3f"),
                            _f(f["a"], ".3g"), _f(f["b"], ".3g"), _f(f["c"], ".3g"), f["points"]]
                           for f in doc["fits"] if f["points"] >= 2],
                          title="growth with T"))
    return "\n".join(parts)


def _csv(rows: list[dict[str, Any]], tmp: str) -> None:
    fields = [k for k in Row.__dataclass_fields__ if k != "timings_ms"]
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def execute(plan_: Plan, *, fmt: str = "table", as_json: bool = False) -> dict[str, Any]:
    """Run the sweep with a progress bar on stderr, saving after every row; render at the end.
    Ctrl-C renders the rows finished so far, says which files keep them, and re-raises;
    --fail-above R then fails (CheckFailedError) when a matching row got slower than R x."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from attncli import console
    from attncli.profile.sweep import series_key, series_label

    model = plan_.model
    env = environment(model.device, model.dtype, model.tp)
    summary = model_summary(model, plan_.name, plan_.random_weights)
    rows: list[Row] = []
    points = plan_.spec.points()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console.err, transient=True)
    doc = result_document(env, summary, rows, plan_.spec)
    interrupted = False
    try:
        warm_up(model, plan_.spec)  # one-time allocations in no row: each row's peak is its own work
        with progress:
            task = progress.add_task("profile", total=len(points))
            for row in run_sweep(model, plan_.spec):
                rows.append(row)
                doc = result_document(env, summary, rows, plan_.spec)
                save(plan_, doc)
                # points run in order, and those skipped after an OOM count as done
                done = points.index((row.mode, row.cache, row.attn, row.seq_len)) + 1
                progress.update(task, completed=done,
                                description=f"{series_label(series_key(row))} T={row.seq_len}")
    except KeyboardInterrupt:
        interrupted = True
    if plan_.plot and doc["rows"]:
        from attncli.profile.plot import plot_profile

        plot_profile(doc, plan_.plot)
    fmt = "json" if as_json else fmt
    if fmt == "json":
        console.print_json(doc)
    elif fmt == "csv":
        console.write(csv_rows(doc))
    elif fmt == "md":
        console.write(markdown_doc(doc))
    else:
        _render(plan_, doc, summary, env)
    kept = [p for p in (plan_.out, plan_.csv_path, plan_.plot) if p and (p.exists())]
    for path in kept:
        console.err.print(f"{'kept' if interrupted else 'wrote'} {path}" +
                          (f" ({len(rows)} finished rows)" if interrupted else ""), highlight=False)
    if interrupted:
        raise KeyboardInterrupt
    if plan_.compare is not None and plan_.fail_above is not None:
        slow = slower_than(pairs(doc["rows"], plan_.compare["rows"]), plan_.fail_above)
        if slow:
            worst = max(slow, key=lambda x: x[1])
            raise CheckFailedError(
                f"profile --fail-above {plan_.fail_above:g}: {len(slow)} row(s) slower than {plan_.fail_above:g}x "
                f"{plan_.compare_name}; worst {series_label(series_key(worst[0]))} T={worst[0]['seq_len']} at "
                f"{worst[1]:.3f}x")
    return doc


def _render(plan_: Plan, doc: dict[str, Any], summary: dict[str, Any], env: dict[str, Any]) -> None:
    from attncli import console
    from attncli.profile import tables

    out = console.out
    out.print(f"[bold]{summary['name']}[/] ({summary['architecture']}, {summary['parameters']:,} parameters, "
              f"{summary['dtype']}) on {env['device_name']} ({env['device']}, {env['threads']} threads), torch {env['torch']}")
    for table in tables.mode_tables(doc["rows"]):
        out.print(table)
    out.print(tables.fit_table(doc["fits"]))
    if summary["attention_overtakes_at"]:
        out.print(f"attention FLOPs overtake projections + MLP at T ≈ {summary['attention_overtakes_at']:,} (prefill, analytic)")
    chart = tables.chart(doc["rows"])
    if chart:
        out.print(chart, markup=False, highlight=False)
    if plan_.compare is not None:
        for line in mismatches(doc, plan_.compare):
            console.err.print(f"warning: --compare {plan_.compare_name}: {line}; the ratios compare unlike setups",
                              highlight=False, markup=False)
        matched = pairs(doc["rows"], plan_.compare["rows"])
        if matched:
            out.print(tables.compare_table(matched, plan_.compare_name))
        else:
            console.err.print(f"warning: --compare {plan_.compare_name}: no row matches this run's "
                              "(mode, cache, backend, batch, T): nothing to compare", highlight=False, markup=False)
