"""The README's set-up commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text: str) -> list[str]:
    blocks, inside = [], False
    for line in text.splitlines():
        if line.startswith("```bash"):
            inside, current = True, []
        elif line.startswith("```") and inside:
            inside = False
            blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert "pytest" in ci
    assert ci in _bash_blocks(readme), "the README's test command and .ci/run differ"


def test_readme_install_command_pins_the_cpu_torch():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    assert any("torch==2.13.0 ." in b and "attncli" in b.split("&&")[-1] for b in blocks)


def test_the_command_surface_is_documented_in_the_repo():
    readme = (ROOT / "README.md").read_text()
    assert "shared/" not in readme  # users get docs/CLI.md, not a file outside the repository
    cli_doc = (ROOT / "docs" / "CLI.md").read_text()
    for command in ("generate", "inspect-mask", "profile", "info"):
        assert f"## `attncli {command}" in cli_doc, command
    assert (ROOT / "docs" / "ARCHITECTURE.md").is_file() and "docs/ARCHITECTURE.md" in readme


def test_every_package_ships_in_a_plain_install():
    """`pip install .` (the README's first command) installs only the packages pyproject lists:
    a new package left out of it breaks the install while editable test installs still pass."""
    import re

    listed = set(re.findall(r'"(attncli[\w.]*)"', (ROOT / "pyproject.toml").read_text().split("packages = [")[1].split("]")[0]))
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "attncli").rglob("__init__.py")}
    assert found <= listed, f"missing from pyproject's packages: {sorted(found - listed)}"
