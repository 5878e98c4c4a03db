"""Finding a model on disk: a folder (single or sharded safetensors) or one .safetensors
file, its config.json and generation_config.json. Pickle checkpoints are refused."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attncli.errors import BadInputError, ModelLoadError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


EMBEDDED_MODEL = Path(__file__).resolve().parent.parent / "data" / "default-model"


def default_model_path() -> Path:
    """The model used when neither -m nor ATTNCLI_MODEL names one."""
    if (EMBEDDED_MODEL / "config.json").is_file():
        return EMBEDDED_MODEL
    raise BadInputError("no model given: pass -m PATH or set ATTNCLI_MODEL (this build has no embedded model yet)")


@dataclass
class ModelFiles:
    folder: Path
    config: dict[str, Any]
    generation_config: dict[str, Any] | None
    weight_files: list[Path]


def _refuse_pickle(path: Path) -> BadInputError:
    return BadInputError(
        f"{path} is a pickle checkpoint, which can run code when loaded; attncli reads safetensors only "
        "(convert it, e.g. with safetensors.torch.save_file on a trusted machine)"
    )


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path}: {what} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: {what} is not a JSON object")
    return data


def find_model(path: str | Path) -> ModelFiles:
    path = Path(path).expanduser()
    if not path.exists():
        raise BadInputError(f"model path does not exist: {path}")
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise _refuse_pickle(path)
        if path.suffix != ".safetensors":
            raise BadInputError(f"{path} is not a model folder or a .safetensors file")
    folder = path.parent if path.is_file() else path
    if path.is_dir() and not any(folder.glob("*.safetensors")):
        pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise _refuse_pickle(pickles[0])
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise BadInputError(f"{folder} has no config.json; a model folder needs config.json and safetensors weights")
    weights = [path] if path.is_file() else _weight_files(folder)
    config = read_json(config_path, "config.json")
    gen_path = folder / "generation_config.json"
    gen = read_json(gen_path, "generation_config.json") if gen_path.is_file() else None
    return ModelFiles(folder, config, gen, weights)


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index, "the shard index").get("weight_map")
        if not isinstance(weight_map, dict):
            raise ModelLoadError(f"{index}: no weight_map")
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ModelLoadError(f"{index} names shard(s) that are not there: {', '.join(missing)}")
        return [folder / s for s in shards]
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    found = sorted(folder.glob("*.safetensors"))
    if found:
        return found
    raise BadInputError(f"{folder} holds no .safetensors weights")


def display_name(folder: Path) -> str:
    """How output names a model folder: the embedded one by that name (not this machine's
    install path), others as given, relative to the working folder when inside it."""
    folder = Path(folder)
    try:
        if folder.resolve() == EMBEDDED_MODEL.resolve():
            return "embedded model"
        return str(folder.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(folder)
