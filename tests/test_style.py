"""The repository is formatted and linted with its configured tools (ruff, ``[tool.ruff]`` in
pyproject.toml; DEVELOPERS.md, Formatting)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert "No module named ruff" not in result.stderr, "ruff is not installed: pip install -e '.[dev]'"
    return result


@pytest.mark.parametrize(
    "command", [("format", "--check", "--diff", "."), ("check", "--no-fix", "--output-format", "concise", ".")]
)
def test_ruff_finds_nothing_to_change(command):
    result = ruff(*command)
    assert result.returncode == 0, f"ruff {' '.join(command)}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"


def test_ruff_applies_the_project_settings():
    """pyproject.toml's settings reach ruff: 120 columns, unused imports, import order."""
    probe = "import os\nx = '" + "y" * 120 + "'\n"
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-fix", "--output-format", "concise"]
        + ["--stdin-filename", "gcnet/probe.py", "-"],
        cwd=REPO_ROOT,
        input=probe,
        capture_output=True,
        text=True,
        check=False,
    )
    codes = sorted(line.split(": ")[1].split()[0] for line in result.stdout.splitlines() if ": " in line)
    assert codes == ["E501", "F401", "I001"], result.stdout
