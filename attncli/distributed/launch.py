"""``--tp N``: start N local processes of this very command as one tensor-parallel group,
through torch's own elastic launcher (what torchrun runs), and wait for them.

Rank 0 alone prints and writes files; the other ranks' stdout goes nowhere and their error
lines to a folder the launcher reads: if any rank fails, the launcher stops them all and the
user sees one line (rank 0's, or the failing rank's when rank 0 was stopped first), and its
exit code. Under a plain torchrun the other ranks print their errors prefixed ``rank r:``.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path

from attncli.distributed.env import launched_world, rank
from attncli.errors import BadInputError

ERRORS_ENV = "ATTNCLI_TP_ERRORS"  # the folder where ranks other than 0 leave their error line
ARGV: list[str] = []  # the command line of this process (set by attncli.cli.main), relaunched as is


def entry(tp: int, device: str) -> int | None:
    """At the start of a command given ``--tp``: None to go on in this process (no TP, or
    this is a rank of the group), or the exit code of the group this process launched."""
    world = launched_world()
    if world > 1:
        if tp not in (1, world):
            raise BadInputError(f"--tp {tp}, but this process was launched in a group of {world}")
        return None
    if tp <= 1:
        if tp < 1:
            raise BadInputError(f"--tp {tp}: must be >= 1")
        return None
    check_devices(tp, device)
    return run_local(tp, device)


def check_devices(tp: int, device: str) -> None:
    if device.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if tp > count:
            raise BadInputError(f"--tp {tp}: one GPU per rank, and this machine has {count}")
    elif tp > (os.cpu_count() or 1):
        raise BadInputError(f"--tp {tp}: more ranks than the {os.cpu_count()} CPU cores to divide between them")


def run_local(tp: int, device: str) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.environ["ATTNCLI_TP_DEVICE"] = "cuda" if device.startswith("cuda") else "cpu"
    if device == "auto":
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() >= tp:
            os.environ["ATTNCLI_TP_DEVICE"] = "cuda"
    if os.environ["ATTNCLI_TP_DEVICE"] == "cpu":  # the cores divided between the ranks
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // tp)))
    for name in ("torch.distributed.elastic", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # their summary of a failure is not for users
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=tp, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1)
    with tempfile.TemporaryDirectory(prefix="attncli-tp-") as errors:
        os.environ[ERRORS_ENV] = errors
        try:
            elastic_launch(config, sys.executable)("-m", "attncli", *ARGV)
            return 0
        except ChildFailedError as err:
            return _one_line(err, Path(errors))
        finally:
            os.environ.pop(ERRORS_ENV, None)


def _one_line(err, errors: Path) -> int:
    """The exit code (and, if rank 0 printed none, the error line) of a failed group."""
    said = {int(p.stem.split("-")[1]): p for p in errors.glob("rank-*-*.txt")}  # rank -> its error file
    if 0 in said:  # rank 0 printed its own line
        return _code(said[0])
    for r in sorted(said):
        from attncli import console

        console.error_line(said[r].read_text(encoding="utf-8").strip())
        return _code(said[r])
    codes = [f.exitcode for f in err.failures.values()]
    return next((c for c in codes if c and c > 0), 1)


def _code(path: Path) -> int:
    return int(path.stem.split("-")[2])


def quiet_secondary() -> None:
    """On a rank other than 0: nothing on stdout (rank 0 prints), no progress or stats on stderr."""
    if rank() == 0:
        return
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the process's life
    from attncli import console

    console.err.quiet = True
    console.out.quiet = True


def secondary_error(message: str, code: int) -> bool:
    """Leave the error line for the launcher (``--tp N``), and say whether this rank must keep
    it to itself: rank 0 prints its line as usual (False); another rank leaves it (or, under
    a plain torchrun, prints it prefixed with its rank) and prints nothing else (True)."""
    r = rank()
    folder = os.environ.get(ERRORS_ENV) if launched_world() > 1 else None
    line = message if r == 0 else f"rank {r}: {message}"
    if folder and Path(folder).is_dir():
        (Path(folder) / f"rank-{r}-{code}.txt").write_text(line + "\n", encoding="utf-8")
    elif r:
        print(f"error: {line}", file=sys.__stderr__)
    return r != 0
