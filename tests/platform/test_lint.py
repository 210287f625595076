"""The linters are part of the suite: ruff on the whole tree, and mypy, strict, on the
pure domain code and app/core ([tool.mypy] in pyproject.toml). mypy keeps its cache in
.data/mypy: the first run on a fresh clone reads the libraries (seconds), later runs
only what changed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )


def test_ruff_is_clean():
    out = _run("ruff", "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_is_clean_and_strict_on_the_domain_code():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["strict"] is True
    assert {"app/core", "app/*/domain", "app/*/rules.py"} <= set(config["files"])
    out = _run("mypy")
    assert out.returncode == 0, out.stdout + out.stderr
