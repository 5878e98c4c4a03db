"""Where this process stands in a launched group, from the launcher's environment alone
(WORLD_SIZE, RANK): no torch import, so that `attncli --help` and the atomic writer stay light."""

from __future__ import annotations

import os


def launched_world() -> int:
    """WORLD_SIZE as a launcher set it (1 when this process was not launched as a group)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def rank() -> int:
    """RANK as the launcher set it (0 outside a group); read without starting the group."""
    try:
        return int(os.environ.get("RANK", "0")) if launched_world() > 1 else 0
    except ValueError:
        return 0


def is_primary() -> bool:
    """True on rank 0 and outside any group: the one process that prints and writes files."""
    return rank() == 0
