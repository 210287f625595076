"""Every expected error a mutation can raise is a member of its result union.

Read from the source, not by running anything: for each mutation field, the resolver's
function is the start; from it the test follows (by AST) the calls to functions of our
packages (a call, or a function passed along, e.g. to ``attempt`` or ``in_transaction``),
transitively, and collects the classes in ``raise X(...)`` (also ``raise f(...)`` where
``f`` returns ``X(...)``; not ``raise TABLE[key](...)``: which key is a runtime
question). An error raised inside a ``try`` whose handler catches it (and does not re-raise)
does not count. Only ``UserError`` subclasses are expected errors: a ``TransientError``
or an ``InvariantViolation`` never reaches the client typed, by its base class.

What it cannot see (methods called on objects, errors kept in variables) it misses: the
check errs on the side of silence, never of a false alarm."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLNonNull, GraphQLUnionType

from app.core.errors import UserError
from graphql_schema import errors as graphql_errors
from graphql_schema.schema import Mutation, schema

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "resolvers", "graphql_schema", "db")

Key = tuple[str, str]  # (module, qualified name in it)


@dataclass
class Module:
    name: str
    tree: ast.Module
    imports: dict[str, str] = field(default_factory=dict)  # local name -> "module[:attr]"
    defs: dict[str, ast.AST] = field(default_factory=dict)  # "f", "Class", "Class.method"


def _path_of(module: str) -> Path | None:
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


@cache
def _module(name: str) -> Module | None:
    path = _path_of(name)
    if path is None:
        return None
    module = Module(name, ast.parse(path.read_text(), str(path)))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(module.tree):  # imports in function bodies count too
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    module.imports[alias.asname] = alias.name
                else:
                    module.imports.setdefault(alias.name.split(".")[0], alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                parts = package.split(".")
                prefix = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{prefix}.{source}" if source else prefix
            for alias in node.names:
                target = f"{source}.{alias.name}"
                local = alias.asname or alias.name
                module.imports[local] = target if _path_of(target) else f"{source}:{alias.name}"
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            module.defs[node.name] = node
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        module.defs[f"{node.name}.{item.name}"] = item
    return module


def _lookup(module_name: str, name: str, depth: int = 0) -> Key | str | None:
    """What ``name`` is in ``module_name``: a definition (module, qualname), a module
    name, or None (not ours)."""
    module = _module(module_name)
    if module is None or depth > 10:
        return None
    if name in module.defs:
        return (module_name, name)
    target = module.imports.get(name)
    if target is None:
        return None
    if ":" not in target:
        return target if _path_of(target) else None
    source, attr = target.split(":")
    return _lookup(source, attr, depth + 1)


def _resolve(module_name: str, expr: ast.expr) -> Key | str | None:
    """A Name or dotted Attribute in ``module_name``, as for ``_lookup``."""
    if isinstance(expr, ast.Name):
        return _lookup(module_name, expr.id)
    if isinstance(expr, ast.Attribute):
        base = _resolve(module_name, expr.value)
        if isinstance(base, str):
            return _lookup(base, expr.attr)
        if isinstance(base, tuple) and f"{base[1]}.{expr.attr}" in _module(base[0]).defs:
            return (base[0], f"{base[1]}.{expr.attr}")
    return None


def _head(expr: ast.expr) -> str | None:
    while isinstance(expr, ast.Attribute):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def _instances(key: Key, node: ast.AST) -> dict[str, Key | None]:
    """The names a function binds (arguments, assignments: they shadow module names),
    with the class of our own when known: ``self`` in a method, ``x = Class(...)``, an
    argument annotated ``x: Class``."""
    scope: dict[str, Key | None] = {
        item.arg if isinstance(item, ast.arg) else item.id: None
        for item in ast.walk(node)
        if isinstance(item, ast.arg)
        or (isinstance(item, ast.Name) and isinstance(item.ctx, ast.Store))
    }
    if "." in key[1]:
        scope["self"] = (key[0], key[1].split(".")[0])

    def add(name: str, expr: ast.expr | None) -> None:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            expr = ast.parse(expr.value, mode="eval").body
        if isinstance(expr, ast.Name | ast.Attribute):
            owner = _resolve(key[0], expr)
            if isinstance(owner, tuple) and isinstance(
                _module(owner[0]).defs.get(owner[1]), ast.ClassDef
            ):
                scope[name] = owner

    for item in ast.walk(node):
        if isinstance(item, ast.arg):
            add(item.arg, item.annotation)
        elif isinstance(item, ast.Assign) and isinstance(item.value, ast.Call):
            for target in item.targets:
                if isinstance(target, ast.Name):
                    add(target.id, item.value.func)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            add(item.target.id, item.annotation)
    return scope


def _class(key: Key | str | None) -> type | None:
    if not isinstance(key, tuple) or "." in key[1]:
        return None
    value = getattr(importlib.import_module(key[0]), key[1], None)
    return value if isinstance(value, type) else None


def _user_error(key: Key | str | None) -> type[UserError] | None:
    cls = _class(key)
    return cls if cls is not None and issubclass(cls, UserError) else None


class _Raises:
    """The UserError classes a function can raise, following our calls."""

    def __init__(self) -> None:
        self.memo: dict[Key, frozenset[type[UserError]]] = {}
        self.returned_memo: dict[Key, frozenset[type[UserError]]] = {}

    def of(self, key: Key) -> frozenset[type[UserError]]:
        if key not in self.memo:
            self.memo[key] = frozenset()  # a recursive call adds nothing new
            node = _module(key[0]).defs[key[1]]
            self.memo[key] = frozenset(self._in(key[0], node, _instances(key, node)))
        return self.memo[key]

    def _callee(self, key: Key) -> frozenset[type[UserError]]:
        node = _module(key[0]).defs.get(key[1])
        if isinstance(node, ast.ClassDef):  # a constructor
            found: set[type[UserError]] = set()
            for method in ("__init__", "__post_init__"):
                if f"{key[1]}.{method}" in _module(key[0]).defs:
                    found |= self.of((key[0], f"{key[1]}.{method}"))
            return frozenset(found)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return self.of(key)
        return frozenset()

    def returned(self, key: Key) -> frozenset[type[UserError]]:
        """The errors a function builds and returns (``raise make_error(...)``)."""
        if key not in self.returned_memo:
            self.returned_memo[key] = frozenset()
            node = _module(key[0]).defs.get(key[1])
            found: set[type[UserError]] = set()
            for item in ast.walk(node) if node is not None else ():
                if isinstance(item, ast.Return) and item.value is not None:
                    found |= self._built(key[0], item.value)
            self.returned_memo[key] = frozenset(found)
        return self.returned_memo[key]

    def _built(self, module: str, expr: ast.expr) -> set[type[UserError]]:
        """The errors ``expr`` (the operand of a raise or return) can be."""
        target = expr.func if isinstance(expr, ast.Call) else expr
        key = _resolve(module, target)
        error = _user_error(key)
        if error is not None:
            return {error}
        if isinstance(expr, ast.Call) and isinstance(key, tuple):
            return set(self.returned(key))
        return set()

    def _in(self, module: str, node: ast.AST, scope: dict[str, Key | None]) -> set[type[UserError]]:
        if isinstance(node, ast.Try | ast.TryStar):
            raised = set().union(*(self._in(module, n, scope) for n in node.body))
            for handler in node.handlers:
                reraises = any(
                    isinstance(n, ast.Raise) and n.exc is None for n in ast.walk(handler)
                )
                caught = self._caught(module, handler.type)
                if not reraises:
                    raised = {e for e in raised if not issubclass(e, caught)}
            for n in [*node.handlers, *node.orelse, *node.finalbody]:
                raised |= self._in(module, n, scope)
            return raised
        found: set[type[UserError]] = set()
        if isinstance(node, ast.Raise) and node.exc is not None:
            found |= self._built(module, node.exc)
        if isinstance(node, ast.Name | ast.Attribute) and isinstance(node.ctx, ast.Load):
            key = None if _head(node) in scope else _resolve(module, node)
            if (  # instance.method: an instance of one of our classes, known in this function
                key is None
                and isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in scope
            ):
                owner = scope[node.value.id]
                if owner is not None:
                    method = (owner[0], f"{owner[1]}.{node.attr}")
                    key = method if method[1] in _module(method[0]).defs else None
            if isinstance(key, tuple):
                found |= self._callee(key)
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.Attribute):
                break  # a.b.c is resolved as a whole above
            found |= self._in(module, child, scope)
        return found

    def _caught(self, module: str, expr: ast.expr | None) -> tuple[type, ...]:
        if expr is None:
            return (BaseException,)
        items = expr.elts if isinstance(expr, ast.Tuple) else [expr]
        classes = []
        for item in items:
            cls = _class(_resolve(module, item))
            if cls is None and isinstance(item, ast.Name | ast.Attribute):
                name = item.id if isinstance(item, ast.Name) else item.attr
                cls = {"Exception": Exception, "BaseException": BaseException}.get(name)
            if cls is not None:
                classes.append(cls)
        return tuple(classes)


def _mutations() -> Iterator[tuple[str, Callable[..., Any], GraphQLUnionType]]:
    graphql_fields = schema._schema.mutation_type.fields
    for strawberry_field in Mutation.__strawberry_definition__.fields:
        name = schema.config.name_converter.get_graphql_name(strawberry_field)
        result = graphql_fields[name].type
        if isinstance(result, GraphQLNonNull):
            result = result.of_type
        if isinstance(result, GraphQLUnionType):
            resolver = strawberry_field.base_resolver.wrapped_func
            yield name, resolver, result


def _raised_by(resolver: Callable[..., Any]) -> frozenset[type[UserError]]:
    return _Raises().of((resolver.__module__, resolver.__name__))


MUTATIONS = sorted(_mutations(), key=lambda m: m[0])

_BY_EVENT = "orders.apply refuses a CANCEL or an AMEND by its own error; this sends neither"
_BACKSTOP = "the ledger's backstop: this flow only takes from a hold or a stake it checked"
_PAPER_VENUE = (
    "the simulated venue applies CANCEL to live orders only (orders.apply) and no AMEND here"
)
_PAPER_MARKET = "the paper account's market is looked up by its foreign key"
# Paths the source has but the mutation cannot take, each with the reason. An entry that
# is no longer found fails too (``test_every_unreachable_entry_is_still_found``).
_CUSTODY = (
    "exchange custody posts to no user account (the journal's check is for those); a mirror"
    " never goes negative: its amounts are checked first"
)
UNREACHABLE: dict[tuple[str, str], str] = {
    ("amendOrder", "UnknownMarket"): "the order's market is looked up by its foreign key",
    ("approveWithdrawal", "InsufficientFunds"): _BACKSTOP,
    ("rejectWithdrawal", "InsufficientFunds"): _BACKSTOP,
    ("cancelWithdrawal", "InsufficientFunds"): _BACKSTOP,
    ("unstake", "InsufficientFunds"): _BACKSTOP,
    ("creditCryptoDeposit", "InsufficientFunds"): "a deposit credits the user, takes nothing",
    ("createPriceAlert", "InvalidOrder"): "check_alert_price refuses a non-positive price first",
    ("enableTwoFactor", "TwoFactorRequired"): "two-factor is off (else TwoFactorAlreadyEnabled)",
    ("enableTwoFactor", "InvalidTwoFactorCode"): "two-factor is off: no code is asked",
    ("stake", "UnknownCurrency"): "a product's asset is a currency by foreign key",
    ("cancelOrder", "OrderNotAmendable"): _BY_EVENT,
    ("placeOrderList", "OrderNotAmendable"): _BY_EVENT,
    ("placeOrderList", "OrderNotCancellable"): _BY_EVENT,
    ("placePaperOrderList", "OrderNotAmendable"): _PAPER_VENUE,
    ("placePaperOrderList", "OrderNotCancellable"): _PAPER_VENUE,
    ("placePaperOrderList", "UnknownMarket"): _PAPER_MARKET,
    ("cancelPaperOrderList", "OrderNotAmendable"): _PAPER_VENUE,
    ("cancelPaperOrderList", "UnknownMarket"): _PAPER_MARKET,
    ("cancelPaperOrderList", "InsufficientFunds"): "the paper book's backstop: a cancel frees"
    " holds, the book follows the venue's balances",
    ("connectExchangeAccount", "InsufficientFunds"): _CUSTODY,
    ("disconnectExchangeAccount", "InsufficientFunds"): _CUSTODY,
    ("syncExchangeAccount", "InsufficientFunds"): _CUSTODY,
}


def test_every_union_mutation_is_checked() -> None:
    assert len(MUTATIONS) > 40


@pytest.mark.parametrize(("name", "resolver", "union"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_every_error_a_mutation_can_raise_is_in_its_union(
    name: str, resolver: Callable[..., Any], union: GraphQLUnionType
) -> None:
    members = {member.name for member in union.types}
    missing = sorted(
        error.__name__
        for error in _raised_by(resolver)
        if error.__name__ not in members and (name, error.__name__) not in UNREACHABLE
    )
    assert not missing, f"{name} can raise {missing}, not members of {union.name}"


def test_every_raised_error_has_a_graphql_type() -> None:
    raised = set().union(*(_raised_by(resolver) for _, resolver, _ in MUTATIONS))
    untyped = sorted(e.__name__ for e in raised if e not in graphql_errors._BY_DOMAIN)
    assert not untyped, f"no GraphQL type (give them a description): {untyped}"


def test_every_unreachable_entry_is_still_found() -> None:
    by_name = {name: resolver for name, resolver, _ in MUTATIONS}
    stale = [
        entry
        for entry in UNREACHABLE
        if entry[1] not in {e.__name__ for e in _raised_by(by_name[entry[0]])}
    ]
    assert not stale, f"no longer raised: drop them from UNREACHABLE: {stale}"


def test_the_analysis_sees_errors_behind_calls() -> None:
    """Sanity: the transfer resolver reaches the ledger's InsufficientFunds (three calls
    down) and the placement's typed refusals from the matching engine."""
    raised = {
        e.__name__ for _, r, _ in MUTATIONS if r.__name__ == "transfer" for e in _raised_by(r)
    }
    assert {"InsufficientFunds", "TransferToSelf", "IdempotencyKeyReused"} <= raised
