"""Output files that are never half-written, and output paths refused before any work."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from attncli.errors import BadInputError


def check_output_path(path: str | os.PathLike, *, flag: str, suffixes: tuple[str, ...] | None = None) -> Path:
    """Refuse a bad output path up front: unknown extension, missing or unwritable folder."""
    p = Path(path).expanduser()
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise BadInputError(f"{flag} {path}: unknown extension {p.suffix or '(none)'!r}; use {', '.join(suffixes)}")
    if not p.parent.is_dir():
        raise BadInputError(f"{flag} {path}: folder {p.parent} does not exist")
    if p.is_dir():
        raise BadInputError(f"{flag} {path} is a folder")
    if not os.access(p.parent, os.W_OK):
        raise BadInputError(f"{flag} {path}: folder {p.parent} is not writable")
    return p


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Write to a temporary file beside ``path``, then rename over it: a reader never
    sees half a file, and a failed write leaves the old file alone. Under tensor parallelism
    rank 0 alone writes (every rank holds the same result)."""
    from attncli.distributed.env import is_primary

    if not is_primary():
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; an output is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
