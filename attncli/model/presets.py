"""Real models' shapes, kept as data: no download needed to build one.

Each family keeps its presets as data beside its module (attncli/model/families/NAME.json).
Each preset is the model's public Hugging Face ``config.json``, trimmed to the fields
that matter (the shape, positions, norms, ids, dtype), plus a ``"source"`` key naming
the Hugging Face repository it came from. ``preset_config(name)`` strips ``"source"``
and hands the rest to ``ModelConfig.from_hf`` -- the same strict reader used for a
downloaded config.json, so a preset cannot smuggle in a field attncli does not
implement.

What was left out of each public file:
  * training-only knobs and metadata (dropouts, ``initializer_range``, ``use_cache``,
    ``transformers_version``, GPT-2's ``summary_*`` / ``task_specific_params``);
  * a few flags whose value in the public file is the no-op default but that
    ``from_hf`` does not know by name (noted in each preset's ``note``). Dropping a flag that
    is off leaves the math unchanged.

Provenance. Values were checked against copies of each public
config.json found through stored Hugging Face pages: the official page itself where
it was stored (gpt2, gpt2-medium, older revisions), otherwise several derived
repositories that carry the config unchanged and agree with one another (named per
preset in its note). Where the copies disagreed on a field, the note says which value was taken
and why.

``EXPECTED_PARAMETERS`` holds each model's published parameter count: every one here
is an exact integer (``model.num_parameters()`` / safetensors metadata / GGUF
``general.parameter_count``, quoted in many public places), so the tolerance is zero.
A tied LM head is counted once, as both transformers and attncli count it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from attncli.errors import BadInputError
from attncli.model.config import ModelConfig
from attncli.model.families import MODULES


def _collect() -> tuple[dict[str, dict[str, Any]], dict[str, int], dict[str, str]]:
    """Every family's presets, smallest model first. A family keeps its presets beside its
    module as data (``families/NAME.json``: per preset a provenance note, the published
    parameter count and the config.json fields with their ``source``)."""
    entries: dict[str, dict[str, Any]] = {}
    for name in MODULES:
        path = _FAMILIES_DIR / f"{name}.json"
        if path.is_file():
            entries.update(json.loads(path.read_text(encoding="utf-8")))
    order = sorted(entries, key=lambda n: entries[n]["parameters"])
    return ({n: entries[n]["config"] for n in order}, {n: entries[n]["parameters"] for n in order},
            {n: entries[n]["note"] for n in order})


_FAMILIES_DIR = Path(__file__).resolve().parent / "families"
PRESETS, EXPECTED_PARAMETERS, NOTES = _collect()

# Relative tolerance for a preset whose published count is only approximate
# ("~7.2B"); a preset not listed here must match EXPECTED_PARAMETERS exactly.
# Every preset above has an exact published count, so this is empty.
PARAMETER_TOLERANCE: dict[str, float] = {}


def preset_names() -> list[str]:
    """The known preset names, smallest model first."""
    return list(PRESETS)


def preset_table():
    """The presets as a table for `info --preset help`: name, model_type, parameters, source."""
    from attncli.console import Col, fitted_table

    cells = [[name, cfg["model_type"], f"{EXPECTED_PARAMETERS[name]:,}", cfg["source"]] for name, cfg in PRESETS.items()]
    return fitted_table([Col("preset", "left"), Col("model_type", "left", drop=2), Col("parameters"),
                         Col("source", "left", drop=1)], cells,
                        title="presets (attncli info --preset NAME; profile --preset NAME --random-weights)")


def _known() -> str:
    return ", ".join(PRESETS)


def _entry(name: str) -> dict[str, Any]:
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise BadInputError(f"unknown preset {name!r}; known presets: {_known()}") from None


def preset_hf_config(name: str) -> dict[str, Any]:
    """The preset as a config.json dict (a fresh copy, without the ``source`` key)."""
    cfg = copy.deepcopy(_entry(name))
    cfg.pop("source", None)
    return cfg


def preset_config(name: str) -> ModelConfig:
    """Build the ModelConfig of a real model from its stored config.json fields."""
    return ModelConfig.from_hf(preset_hf_config(name))


def preset_source(name: str) -> str:
    """The Hugging Face repository the preset's fields were taken from."""
    return _entry(name)["source"]
