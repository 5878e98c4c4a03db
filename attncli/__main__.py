"""``python -m attncli``: what each rank of ``--tp N`` runs."""

from attncli.cli import run

run()
