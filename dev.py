#!/usr/bin/env python3
"""Bootstrap for a fresh machine that has only Python 3.11+.

    python3 dev.py run            serve the API with demo data (embedded PostgreSQL + Redis
                                  unless DATABASE_URL / REDIS_URL are set)
    python3 dev.py test [ARGS]    run the whole test suite (pytest ARGS override the defaults)
    python3 dev.py bench [ARGS]   run the benchmarks and print the table
    python3 dev.py lint           ruff on the tree, then mypy (strict on the domain code)

Each command first creates .venv and installs the pinned dependencies (constraints.txt),
once; it reinstalls when pyproject.toml or constraints.txt change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
MARKER = VENV / ".cryptoorchestrator-installed"
DEFAULT_TEST_ARGS = ["-n", "auto", "-q"]


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036  (this file runs on any python3)
        raise SystemExit("Python 3.11 or newer is required")
    fingerprint = _fingerprint()
    if MARKER.exists() and MARKER.read_text() == fingerprint and PYTHON.exists():
        return
    if not PYTHON.exists():
        print("Creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    print(
        "Installing the pinned dependencies into .venv (constraints.txt; pip's progress "
        "follows; a few minutes the first time, again only when pyproject.toml or "
        "constraints.txt change) ...",
        flush=True,
    )
    started = time.monotonic()
    subprocess.run(  # noqa: S603
        [
            str(PYTHON),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--progress-bar",
            "on" if sys.stdout.isatty() else "off",
            "-c",
            "constraints.txt",
            "-e",
            ".[dev]",
        ],
        cwd=ROOT,
        check=True,
    )
    MARKER.write_text(fingerprint)
    print(f"Dependencies installed in {time.monotonic() - started:.0f} s.", flush=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "bench", "lint"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_environment()
    os.chdir(ROOT)
    if command == "lint":
        for tool in (["ruff", "check", "."], ["mypy"]):  # mypy: [tool.mypy] in pyproject.toml
            if subprocess.run([str(PYTHON), "-m", *tool], check=False).returncode:  # noqa: S603
                return 1
        return 0
    if command == "run":
        args = ["-m", "app", "serve"]
    elif command == "test":
        args = ["-m", "app", "test", *(rest or DEFAULT_TEST_ARGS)]
    else:
        args = ["-m", "bench", *rest]
    os.execv(str(PYTHON), [str(PYTHON), *args])  # noqa: S606
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
