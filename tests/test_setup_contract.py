"""The set-up contract, checked cheaply: the two commands, the Makefile, CI, the CLI.

A fresh clone on a fresh Debian machine runs `make serve` / `make test`; the full check
is doing exactly that (see docs/OPERATIONS.md). Here: README starts with the two
commands, the Makefile targets exist and dry-run, `.ci/run` calls `make test`, the
system set-up script is valid and idempotent, the console script is installed, every
command's `--help` works, and the import directions of DESIGN.md hold.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rsyncd_py.cli.main import SUBCOMMANDS

REPO = Path(__file__).resolve().parent.parent
MAKE_TARGETS = ("setup", "system", "serve", "test", "soak", "bench", "lint", "clean")


def test_readme_starts_with_the_two_commands() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert lines[0].startswith("# ")
    first_block = re.search(r"```\n(.*?)```", "\n".join(lines), re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make serve", "make test"]
    prose_before = "\n".join(lines[1 : lines.index("```")]).strip()
    assert prose_before == ""  # nothing comes before the two commands


def test_readme_links_to_existing_docs() -> None:
    text = (REPO / "README.md").read_text()
    for link in re.findall(r"\]\((docs/[^)]+)\)", text):
        if link == "docs/STORE.md" and not (REPO / link).exists():
            continue  # written by the store engineers; linked ahead of time
        assert (REPO / link).is_file(), link


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_make_target_dry_runs(target: str) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "-n", target], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_make_test_runs_ruff_and_the_suite_after_setup() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(
        ["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "tools/setup-system.sh" in dry
    assert "ruff check" in dry
    assert re.search(r"pytest -n \d", dry)


def test_ci_entry_point_calls_make_test() -> None:
    ci = REPO / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    commands = [
        line.strip()
        for line in ci.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "make test" in commands


def test_system_setup_script_is_valid_and_idempotent() -> None:
    script = REPO / "tools" / "setup-system.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    # This machine already has everything (the suite needs it), so a run installs nothing.
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "rsyncd-py"
    assert script.is_file() and os.access(script, os.X_OK)
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout


def _help(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rsyncd_py.cli.main", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_subcommand_help_runs(command: str) -> None:
    if importlib.util.find_spec(SUBCOMMANDS[command]) is None:
        pytest.skip(f"{SUBCOMMANDS[command]} is not written yet")
    result = _help(command)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"rsyncd-py {command}" in result.stdout


def test_serve_help_states_the_defaults() -> None:
    text = " ".join(_help("serve").stdout.split())
    assert "127.0.0.1:2222" in text
    assert "authorized_keys" in text
    assert "RSYNCD_PY_DATA" in text


def _imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in one source file."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("blockstore", {"rsyncd_py"}),
        ("rsyncd_py/protocol", {"asyncio", "asyncssh", "blockstore", "trio", "uvloop"}),
    ],
)
def test_import_directions(package: str, forbidden: set[str]) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    offenders = {
        str(path.relative_to(REPO)): sorted(_imports(path) & forbidden)
        for path in files
        if _imports(path) & forbidden
    }
    assert offenders == {}
