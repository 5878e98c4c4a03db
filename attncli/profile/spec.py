"""What a sweep runs: the (mode, cache, backend, T) points, parsed from flags and from
sweep definitions (profiles/*.toml, shipped as attncli.profiles), checked against the
model before anything is measured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attncli.errors import BadInputError
from attncli.model.attention import check_backend
from attncli.model.transformer import Transformer


MODES = ("prefill", "decode")


@dataclass(frozen=True)
class SweepSpec:
    seq_lens: list[int]
    batch: int = 1
    modes: tuple[str, ...] = ("prefill", "decode")
    caches: tuple[bool, ...] = (True, False)  # decode only
    attns: tuple[str, ...] = ("sdpa",)
    repeats: int = 3
    warmup: int = 1
    compile: bool = False  # torch.compile the cached decode step (decode rows with the cache)
    breakdown: bool = False  # time the attention kernels apart from the rest

    def points(self) -> list[tuple[str, bool | None, str, int]]:
        """(mode, cache, attn, T) in run order: series by series, T ascending."""
        out = []
        for mode in self.modes:
            for cache in (self.caches if mode == "decode" else (None,)):
                for attn in self.attns:
                    out.extend((mode, cache, attn, t) for t in sorted(self.seq_lens))
        return out


def parse_seq_lens(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise BadInputError(f"--seq-lens must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise BadInputError(f"--seq-lens must be positive integers, got {text!r}")
    return sorted(set(values))


def doubling(max_seq_len: int, start: int = 128) -> list[int]:
    if max_seq_len < 1:
        raise BadInputError(f"--max-seq-len must be >= 1, got {max_seq_len}")
    out, t = [], min(start, max_seq_len)
    while t < max_seq_len:
        out.append(t)
        t *= 2
    return out + [max_seq_len]


def parse_choice(text: str, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in values if v not in allowed]
    if not values or bad:
        raise BadInputError(f"{flag}: unknown value {', '.join(bad) or repr(text)}; choose from {', '.join(allowed)}")
    return values


def check_spec(spec: SweepSpec, model: Transformer) -> None:
    cfg = model.cfg
    too_long = [t for t in spec.seq_lens if t > cfg.context_length]
    if too_long and not cfg.fully_windowed:
        raise BadInputError(f"seq-len {too_long[0]} is past the model's context of {cfg.context_length} tokens")
    for attn in spec.attns:
        check_backend(attn)
    if spec.batch < 1 or spec.repeats < 1 or spec.warmup < 0:
        raise BadInputError("--batch and --repeats must be >= 1, --warmup >= 0")


# ---- sweep definitions (profiles/*.toml, shipped as attncli.profiles) ----
PROFILE_KEYS = {"description", "mode", "cache", "attn", "seq_lens", "max_seq_len", "batch", "repeats", "warmup",
                "window"}


def _profiles_dir():
    """Installed: the attncli.profiles package; a source checkout: the repo's profiles/."""
    from importlib import resources

    try:
        return resources.files("attncli.profiles")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "profiles"


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in _profiles_dir().iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str) -> dict[str, Any]:
    """A sweep definition by name (shipped with attncli) or by path to a .toml file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise BadInputError("reading --profile files on Python 3.10 needs tomli: pip install tomli") from None
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise BadInputError(f"--profile {name_or_path}: no such file")
        text = path.read_text(encoding="utf-8")
    else:
        entry = _profiles_dir() / f"{name_or_path}.toml"
        if not entry.is_file():
            raise BadInputError(f"unknown profile {name_or_path!r}; shipped: {', '.join(profile_names())} (or a path to a .toml)")
        text = entry.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BadInputError(f"--profile {name_or_path}: not valid TOML ({err})") from None
    unknown = sorted(set(data) - PROFILE_KEYS)
    if unknown:
        raise BadInputError(f"--profile {name_or_path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(PROFILE_KEYS))}")
    return data
