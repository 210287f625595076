"""Raw SQL and the tables: the modules that use raw asyncpg are the ones ``db.raw``
documents; every column list that SQL text spells out names columns of its table (and an
INSERT's list every NOT NULL column without a default); no list escapes the registry.
Static: no database."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from sqlalchemy import Table

import db.models
import db.raw
from db.base import Base

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "db")
INSERT = re.compile(r"INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE)


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports_raw(tree: ast.Module) -> bool:
    for node in ast.walk(tree):  # imports in function bodies count
        if isinstance(node, ast.ImportFrom):
            if node.module == "db.raw" or (
                node.module == "db" and any(a.name == "raw" for a in node.names)
            ):
                return True
        elif isinstance(node, ast.Import) and any(a.name == "db.raw" for a in node.names):
            return True
    return False


def _trees() -> dict[str, ast.Module]:
    trees = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            trees[_module(path)] = ast.parse(path.read_text(), str(path))
    return trees


TREES = _trees()
RAW_USERS = sorted(name for name, tree in TREES.items() if _imports_raw(tree))


def _documented() -> set[str]:
    doc = db.raw.__doc__ or ""
    section = doc.split("Raw users:", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0] for line in section.strip().splitlines()}


def test_the_modules_that_use_raw_asyncpg_are_the_documented_ones():
    """A new user of ``db.raw`` is added to its docstring, with its reason, on purpose."""
    found = set(RAW_USERS)
    documented = _documented()
    assert found - documented == set(), (
        "use db.raw? add the module to its docstring, or use SQLAlchemy"
    )
    assert documented - found == set(), "documented in db.raw but no longer using it"


def _load_all() -> None:
    for name in RAW_USERS:
        importlib.import_module(name)


def _table(name: str) -> Table:
    assert name in Base.metadata.tables, f"no table {name}"
    return Base.metadata.tables[name]


def _required(table: Table) -> set[str]:
    """The columns an INSERT must give: NOT NULL, no server default, no identity."""
    return {
        c.name
        for c in table.columns
        if not c.nullable and c.server_default is None and c.identity is None
    }


def _check(where: str, table_name: str, names: list[str], *, inserts: bool) -> list[str]:
    table = _table(table_name)
    wrong = [f"{where}: {table_name} has no column {n}" for n in names if n not in table.c]
    if inserts:
        wrong += [
            f"{where}: INSERT INTO {table_name} leaves out {n} (NOT NULL, no default)"
            for n in sorted(_required(table) - set(names))
        ]
    return wrong


def test_every_declared_column_list_names_columns_of_its_table():
    _load_all()
    assert len(db.raw.COLUMN_LISTS) >= 7  # the placement's, the engine's batch ...
    wrong = []
    for listed in db.raw.COLUMN_LISTS.values():
        by_table: dict[str, list[str]] = {}
        for table, column in listed.columns:
            by_table.setdefault(table, []).append(column)
        for table, names in by_table.items():
            wrong += _check(listed.name, table, names, inserts=table == listed.inserts)
        if listed.inserts is not None and listed.inserts not in by_table:
            wrong += _check(listed.name, listed.inserts, [], inserts=True)
    assert wrong == []


def _assigned(tree: ast.Module) -> set[str]:
    """The names a module assigns at its top level."""
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_every_column_list_is_registered_under_its_own_name():
    """The registry's names are where the lists live; and every list a module that uses
    raw SQL declares (an ``Arrays``, a ``*_COLUMNS`` constant) is in the registry, under
    its name or as an ``Arrays``' columns."""
    _load_all()
    for name, listed in db.raw.COLUMN_LISTS.items():
        module, _, attribute = name.rpartition(".")
        value = getattr(importlib.import_module(module), attribute, None)
        assert value is not None, f"{name}: no module attribute of that name"
        if isinstance(value, db.raw.Arrays):
            assert value.name == name
            assert [column for _, column in listed.columns] == list(value.columns)
    arrays_columns = [
        value.columns
        for module_name in RAW_USERS
        for value in vars(importlib.import_module(module_name)).values()
        if isinstance(value, db.raw.Arrays)
    ]
    escaped = []
    for module_name in RAW_USERS:
        module = importlib.import_module(module_name)
        for attribute in _assigned(TREES[module_name]):
            value = getattr(module, attribute, None)
            name = f"{module_name}.{attribute}"
            if isinstance(value, db.raw.Arrays):
                if value.name != name:
                    escaped.append(f"{name}: registered as {value.name}")
            elif attribute.endswith("_COLUMNS"):
                if name not in db.raw.COLUMN_LISTS and not any(
                    value is columns for columns in arrays_columns
                ):
                    escaped.append(f"{name}: declare it with db.raw.bind, bind_select or Arrays")
    assert escaped == []


def _sql_texts(module_name: str) -> list[str]:
    """The SQL a module spells out: its string constants (in functions too) and its
    module-level strings (f-strings, as built at import)."""
    texts = [
        node.value
        for node in ast.walk(TREES[module_name])
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    module = importlib.import_module(module_name)
    texts += [value for value in vars(module).values() if isinstance(value, str)]
    return texts


@pytest.mark.parametrize("module_name", RAW_USERS)
def test_every_insert_list_in_raw_sql_names_the_columns_of_its_table(module_name):
    wrong = []
    for text in _sql_texts(module_name):
        for match in INSERT.finditer(text):
            table, listed = match.group(1), match.group(2)
            if "{" in listed or table not in Base.metadata.tables:
                continue  # a template (checked built), or not a table (a CTE's name)
            names = [n.strip() for n in listed.split(",") if n.strip()]
            wrong += _check(module_name, table, names, inserts=True)
    assert wrong == []


def test_a_list_naming_a_column_its_table_lacks_is_found():
    wrong = _check("example", "orders", ["id", "user_id", "no_such_column"], inserts=True)
    assert "example: orders has no column no_such_column" in wrong
    assert any("leaves out market_id" in w for w in wrong)


def test_rows_are_built_by_name_only():
    from app.trading.engine.rows import FILLS, FillRow

    values = dict(zip(FILLS.fields, range(len(FILLS)), strict=True))
    row = FILLS.row(**values)
    assert type(row) is FillRow and row == FillRow(**values)
    assert FILLS.arrays([row]) == [[v] for v in values.values()]
    with pytest.raises(TypeError):
        FILLS.row(*values.values())  # by position: refused


def test_a_placed_order_writes_every_column_but_those_the_engine_and_defaults_fill():
    """A new column of ``orders`` is written by the placement or left out on purpose."""
    from app.trading.sql import PLACED
    from db.models import Order
    from db.raw import columns_of

    later = (
        *("list_id", "list_role"),  # lists: app.trading.order_lists, through the ORM
        *("filled_quantity", "executed_value", "fees", "fee_numerator", "trailing_extreme"),
        *("priority", "reason", "created_at", "updated_at"),  # the engine's; defaults
    )
    assert PLACED.columns == columns_of(Order, exclude=later)
    with pytest.raises(ValueError, match="not columns of orders"):
        columns_of(Order, exclude=["no_such_column"])
