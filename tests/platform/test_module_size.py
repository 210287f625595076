"""No module of ours (app/, graphql_schema/, resolvers/, db/) is over ``MAX_LINES`` lines
unless its docstring says why, on a line starting with "Size:" (issue 19: one idea per
module; a long module is split by concern, or it is one idea that must be read whole and
says so). Checked on the source; the checker's own tests feed it made-up modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "graphql_schema", "resolvers", "db")
MAX_LINES = 600
REASON = "Size:"


def size_problem(source: str, *, max_lines: int = MAX_LINES) -> str | None:
    """Why a module with this source is too long; None when it is not, or when a line of
    its docstring starts with ``Size:`` and gives a reason."""
    lines = len(source.splitlines())
    if lines <= max_lines:
        return None
    docstring = ast.get_docstring(ast.parse(source)) or ""
    for line in docstring.splitlines():
        if line.startswith(REASON) and line.removeprefix(REASON).strip():
            return None
    return f"{lines} lines (over {max_lines}) and no {REASON!r} line in its docstring"


def test_no_module_is_over_the_size_without_a_reason():
    paths = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(paths) > 100  # the walk found the code
    problems = {
        str(p.relative_to(ROOT)): problem
        for p in paths
        if (problem := size_problem(p.read_text())) is not None
    }
    assert problems == {}


def _module(docstring: str, lines: int) -> str:
    """A made-up module: its docstring, then assignments up to ``lines`` lines."""
    head = f'"""{docstring}"""\n'
    body = "".join(f"x{n} = {n}\n" for n in range(lines - len(head.splitlines())))
    source = head + body
    assert len(source.splitlines()) == lines
    return source


def test_a_long_module_without_a_reason_is_refused():
    problem = size_problem(_module("Things.\n\nMore about things.\n", 601))
    assert problem == "601 lines (over 600) and no 'Size:' line in its docstring"


def test_a_module_of_the_size_itself_passes():
    assert size_problem(_module("Things.", 600)) is None


def test_a_long_module_whose_docstring_gives_a_reason_passes():
    docstring = "The book.\n\nSize: its invariants are read together.\n"
    assert size_problem(_module(docstring, 900)) is None


def test_a_reason_must_be_given_in_the_module_docstring():
    # an empty reason, a reason in a comment or a reason not at the start of a line
    for source in (
        _module("Things.\n\nSize:\n", 700),
        "# Size: long because it is.\n" + _module("Things.", 700),
        _module("Things. Size: long because it is.", 700),
        "x = 1\n" + _module("Size: not the module docstring once code comes first.", 700),
    ):
        assert size_problem(source) is not None
