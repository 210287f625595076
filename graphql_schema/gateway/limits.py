"""Query limits, so that one document cannot cost the server more than its budget:

- tokens: parsing stops past ``max_query_tokens`` (``QUERY_TOO_LARGE``);
- depth and aliases: validation rules (``QUERY_TOO_DEEP``, ``TOO_MANY_ALIASES``), and in
  production introspection off (``INTROSPECTION_DISABLED``). The rule classes are built
  once per set of limits, so ``ValidationCache`` keeps hitting (a rule class built per
  request would be a new cache key every time);
- cost: needs the variables, so it is computed at admission (graphql_schema/gateway/admission.py)
  and the same number is drawn from the rate-limit budget (``QUERY_TOO_COMPLEX``);
- field merging: validation compares same-named fields pairwise (quadratic), so
  admission first counts those comparisons in one bounded walk (``check_merging``:
  ``max_query_fields``, ``max_merge_comparisons``; ``QUERY_TOO_COMPLEX``);
- time: queries run under ``execution_timeout_seconds`` (``EXECUTION_TIMEOUT``).

The cost model: a field returning an object (or a list, union, interface of them) costs 1,
a scalar field 0; a root field costs 1, a root mutation field 10; what a field selects is
multiplied by ``first``/``last`` for paged fields (connections; capped at the maximum page
size) and by 10 for other lists; ``edges`` inside a connection are not multiplied again.
Fragments are expanded (union branches added up), introspection fields (development
only) are free. Examples: ``{ serverTime }`` 1, ``{ me { email wallets { currency } } }``
2, ``{ users(first: 100) { edges { node { id } } } }`` 201.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from functools import cache, lru_cache
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
    is_composite_type,
    parse,
    value_from_ast_untyped,
)
from graphql.pyutils import Undefined
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType as StrawberryOperationType

from app.core.errors import UserError
from app.core.settings import Settings
from db.queries import MAX_PAGE_SIZE

PARSE_CACHE_SIZE = 512
MUTATION_FIELD_COST = 10
UNPAGED_LIST_SIZE = 10
PAGING_ARGUMENTS = ("first", "last")


class QueryTooLarge(UserError):
    code = "QUERY_TOO_LARGE"
    default_message = "The document has too many tokens"


class QueryTooDeep(UserError):
    code = "QUERY_TOO_DEEP"
    default_message = "The query is nested too deeply"


class TooManyAliases(UserError):
    code = "TOO_MANY_ALIASES"
    default_message = "The query uses too many aliases"


class QueryTooComplex(UserError):
    code = "QUERY_TOO_COMPLEX"
    default_message = "The query would cost too much"


class IntrospectionDisabled(UserError):
    code = "INTROSPECTION_DISABLED"
    default_message = "Introspection is disabled"


EXECUTION_TIMEOUT = "EXECUTION_TIMEOUT"
_DEFAULT_MAX_TOKENS: int = Settings.model_fields["max_query_tokens"].default


# parsing


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse(query: str, max_tokens: int) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


def parse_document(query: str, *, max_tokens: int) -> DocumentNode:
    """Parse through one shared LRU cache (admission and execution parse the same text
    once). ``QueryTooLarge`` past ``max_tokens``; ``GraphQLSyntaxError`` otherwise."""
    try:
        return _parse(query, max_tokens)
    except GraphQLSyntaxError as error:
        if error.message.endswith("tokens. Parsing aborted."):
            raise QueryTooLarge(f"The document has more than {max_tokens} tokens") from error
        raise


def _settings(execution_context: Any) -> Settings | None:
    rt = getattr(execution_context.context, "rt", None)
    return rt.settings if rt is not None else None


class DocumentParser(SchemaExtension):
    """Replaces strawberry's ``ParserCache``: the same cache as admission, with the
    token limit."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        settings = _settings(context)
        max_tokens = settings.max_query_tokens if settings else _DEFAULT_MAX_TOKENS
        try:
            context.graphql_document = parse_document(context.query or "", max_tokens=max_tokens)
        except QueryTooLarge as error:
            raise GraphQLError(error.message, extensions={"code": error.code}) from error
        yield


# validation rules


def _measured_once(memo: dict[Any, int], key: Any, measure: Callable[[], int]) -> int:
    """A fragment's measure, computed the first time it is spread and then reused, so a
    walk is linear in the document however fragments nest (spreading a fragment twice per
    level doubles the expanded document with every level). A fragment met again while it
    is being measured (a cycle, which validation refuses) counts 0."""
    if key not in memo:
        memo[key] = 0
        memo[key] = measure()
    return memo[key]


class _DepthWalk:
    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.memo: dict[str, int] = {}

    def depth(self, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value.startswith("__"):
                    continue  # __typename, and introspection (off in production)
                deepest = max(deepest, 1 + self.depth(selection.selection_set))
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, self.depth(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                deepest = max(deepest, self.spread(selection.name.value))
        return deepest

    def spread(self, name: str) -> int:
        fragment = self.fragments.get(name)
        if fragment is None:
            return 0
        return _measured_once(self.memo, name, lambda: self.depth(fragment.selection_set))


class _AliasWalk:
    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.memo: dict[str, int] = {}

    def aliases(self, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += (selection.alias is not None) + self.aliases(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                total += self.aliases(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.spread(selection.name.value)
        return total

    def spread(self, name: str) -> int:
        fragment = self.fragments.get(name)
        if fragment is None:
            return 0
        return _measured_once(self.memo, name, lambda: self.aliases(fragment.selection_set))


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def _depth_rule(max_depth: int) -> type[ASTValidationRule]:
    class MaxDepth(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            walk = _DepthWalk(_fragments(context.document))
            for definition in context.document.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                depth = walk.depth(definition.selection_set)
                if depth > max_depth:
                    message = f"The query is nested {depth} levels deep; the limit is {max_depth}"
                    context.report_error(
                        GraphQLError(message, definition, original_error=QueryTooDeep(message))
                    )

    return MaxDepth


def _alias_rule(max_aliases: int) -> type[ASTValidationRule]:
    class MaxAliases(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            walk = _AliasWalk(_fragments(context.document))
            total = sum(
                walk.aliases(d.selection_set)
                for d in context.document.definitions
                if isinstance(d, OperationDefinitionNode)
            )
            if total > max_aliases:
                message = f"The query uses {total} aliases; the limit is {max_aliases}"
                context.report_error(GraphQLError(message, original_error=TooManyAliases(message)))

    return MaxAliases


class _NoIntrospection(NoSchemaIntrospectionCustomRule):
    def report_error(self, error: GraphQLError) -> None:
        message = "Introspection is disabled"
        super().report_error(
            GraphQLError(message, error.nodes, original_error=IntrospectionDisabled(message))
        )


@cache
def limit_rules(
    *, max_depth: int, max_aliases: int, introspection: bool
) -> tuple[type[ASTValidationRule], ...]:
    """Built once per distinct set of limits (see the module docstring)."""
    rules = (_depth_rule(max_depth), _alias_rule(max_aliases))
    return rules if introspection else (*rules, _NoIntrospection)


def rules_for(settings: Settings) -> tuple[type[ASTValidationRule], ...]:
    return limit_rules(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_query_aliases,
        introspection=not settings.is_production,
    )


class QueryLimits(SchemaExtension):
    """Adds the limit rules to validation, and runs queries under the execution timeout
    (mutations are not cut off half-way: their transactions are short, and a client must
    not be left unsure whether one happened; subscriptions are long-lived by design)."""

    def on_operation(self) -> Iterator[None]:
        settings = _settings(self.execution_context)
        if settings is not None:
            context = self.execution_context
            context.validation_rules = context.validation_rules + rules_for(settings)
        yield

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        context = self.execution_context
        settings = _settings(context)
        if settings is None or context.operation_type is not StrawberryOperationType.QUERY:
            yield
            return
        seconds = settings.execution_timeout_seconds
        try:
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError as error:
            # Raised as a GraphQLError with its code: an exception leaving on_execute skips
            # the other extensions (ErrorPolicy), and strawberry passes a GraphQLError on.
            raise GraphQLError(
                f"The query did not finish within {seconds:g} s",
                extensions={"code": EXECUTION_TIMEOUT},
            ) from error


# merging


class _MergeWalk:
    """What validation's OverlappingFieldsCanBeMergedRule (graphql-core) will compare,
    counted before it runs. The rule compares every two fields that share a response
    path (within a selection set and, recursively, in the sub-selections of same-named
    fields), and each fragment spread with the fields and the other spreads merged
    into the same selection: quadratic in the repeats. Here fragments are expanded where
    they are spread, each field is placed on its response path once, and the walk stops
    as soon as either count passes its limit, so it costs at most ``max_fields`` steps."""

    def __init__(
        self,
        fragments: Mapping[str, FragmentDefinitionNode],
        *,
        max_fields: int,
        max_comparisons: int,
    ) -> None:
        self.fragments = fragments
        self.max_fields = max_fields
        self.max_comparisons = max_comparisons
        self.ids = itertools.count(1)  # of levels: a root, or the path of a field
        self.paths: dict[tuple[int, str], int] = {}  # (level, response name): path
        self.fields_on: dict[int, int] = {}  # path: fields sharing it
        self.fields_in: dict[int, int] = {}  # level: fields merged into it
        self.spreads_in: dict[int, int] = {}  # level: fragment spreads merged into it
        self.expanding: set[str] = set()
        self.expanded: set[str] = set()
        self.fields = 0
        self.comparisons = 0

    def new_level(self) -> int:
        return next(self.ids)

    def walk(self, selection_set: SelectionSetNode, level: int) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                path = self.field(selection, level)
                if selection.selection_set is not None:
                    self.walk(selection.selection_set, path)
            elif isinstance(selection, InlineFragmentNode):
                self.walk(selection.selection_set, level)  # merged into its level
            elif isinstance(selection, FragmentSpreadNode):
                self.spread(selection.name.value, level)

    def field(self, node: FieldNode, level: int) -> int:
        self.fields += 1
        if self.fields > self.max_fields:
            raise QueryTooComplex(
                f"The query selects more than {self.max_fields} fields"
                " (fragments counted where they are spread)"
            )
        name = (node.alias or node.name).value
        path = self.paths.get((level, name)) or self.paths.setdefault(
            (level, name), self.new_level()
        )
        # compared with the fields already on its path and the spreads of its level
        self.count(self.fields_on.get(path, 0) + self.spreads_in.get(level, 0))
        self.fields_on[path] = self.fields_on.get(path, 0) + 1
        self.fields_in[level] = self.fields_in.get(level, 0) + 1
        return path

    def spread(self, name: str, level: int) -> None:
        fragment = self.fragments.get(name)
        if fragment is None or name in self.expanding:
            return  # unknown, or a cycle: validation refuses both
        # compared with the other spreads and the fields merged into its level
        self.count(self.spreads_in.get(level, 0) + self.fields_in.get(level, 0))
        self.spreads_in[level] = self.spreads_in.get(level, 0) + 1
        self.expanding.add(name)
        self.expanded.add(name)
        self.walk(fragment.selection_set, level)
        self.expanding.discard(name)

    def count(self, comparisons: int) -> None:
        self.comparisons += comparisons
        if self.comparisons > self.max_comparisons:
            raise QueryTooComplex(
                "The query repeats fields or fragments too often: validating it would"
                f" compare more than {self.max_comparisons} pairs of them"
            )


def check_merging(document: DocumentNode, *, max_fields: int, max_comparisons: int) -> int:
    """``QueryTooComplex`` when validating the document's field merging would cost too
    much (see ``_MergeWalk``); else the number of comparisons. Every operation is walked
    (validation checks them all), then every fragment no operation spreads."""
    fragments = _fragments(document)
    walk = _MergeWalk(fragments, max_fields=max_fields, max_comparisons=max_comparisons)
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            walk.walk(definition.selection_set, walk.new_level())
    for name, fragment in fragments.items():
        if name not in walk.expanded:
            walk.walk(fragment.selection_set, walk.new_level())
    return walk.comparisons


# cost


class _Coster:
    """One operation's cost under one set of variables: each fragment is costed once
    (per root or inner position) and reused wherever it is spread."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.defaults = {
            d.variable.name.value: value_from_ast_untyped(d.default_value)
            for d in operation.variable_definitions or ()
            if d.default_value is not None
        }
        self.consulted: set[str] = set()  # variables the cost depends on
        self.memo: dict[tuple[str, int], int] = {}

    def int_argument(self, field: FieldNode, definition: GraphQLField, name: str) -> int | None:
        """The argument's value: written in the query, else the request's variable, else
        the variable's default, else the argument's default; unknown: a full page."""
        if name not in definition.args:
            return None
        node = next((a.value for a in field.arguments or () if a.name.value == name), None)
        value: Any = definition.args[name].default_value
        if isinstance(node, VariableNode):
            variable = node.name.value
            self.consulted.add(variable)
            value = self.variables.get(variable, self.defaults.get(variable, Undefined))
        elif node is not None:
            value = int(node.value) if isinstance(node, IntValueNode) else Undefined
        if isinstance(value, bool) or not isinstance(value, int):
            return MAX_PAGE_SIZE  # unknown: assume a full page
        return value

    def multiplier(self, field: FieldNode, definition: GraphQLField, parent: str) -> int:
        sizes = [self.int_argument(field, definition, n) for n in PAGING_ARGUMENTS]
        given = [s for s in sizes if s is not None]
        if given:
            return max(0, min(max(given), MAX_PAGE_SIZE))
        if isinstance(get_nullable_type(definition.type), GraphQLList):
            in_connection = parent.endswith("Connection") and field.name.value == "edges"
            return 1 if in_connection else UNPAGED_LIST_SIZE
        return 1

    def selections(
        self,
        selection_set: SelectionSetNode | None,
        parent: GraphQLNamedType | None,
        root_cost: int = 0,
    ) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, root_cost)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selections(selection.selection_set, target, root_cost)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.spread(selection.name.value, root_cost)
        return total

    def spread(self, name: str, root_cost: int) -> int:
        fragment = self.fragments.get(name)
        if fragment is None:
            return 0
        target = self.schema.get_type(fragment.type_condition.name.value)
        return _measured_once(
            self.memo,
            (name, root_cost),
            lambda: self.selections(fragment.selection_set, target, root_cost),
        )

    def field(self, node: FieldNode, parent: GraphQLNamedType | None, root_cost: int) -> int:
        if node.name.value.startswith("__"):
            return 0
        composite = isinstance(parent, GraphQLObjectType | GraphQLInterfaceType)
        definition = parent.fields.get(node.name.value) if composite else None  # type: ignore[union-attr]
        if definition is None:
            return 1  # not in the schema: validation refuses it
        named = get_named_type(definition.type)
        own = root_cost or (1 if is_composite_type(named) else 0)
        inner = self.selections(node.selection_set, named)
        return own + self.multiplier(node, definition, parent.name if parent else "") * inner


def _cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any],
) -> tuple[int, frozenset[str]]:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 1, frozenset()
    root = schema.get_root_type(operation.operation)
    root_cost = MUTATION_FIELD_COST if operation.operation is OperationType.MUTATION else 1
    coster = _Coster(schema, _fragments(document), operation, variables)
    cost = coster.selections(operation.selection_set, root, root_cost)
    return max(1, cost), frozenset(coster.consulted)


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> int:
    """The cost of the operation that would run (see the module docstring); at least 1."""
    return _cost(
        schema, document, operation_name, variables if isinstance(variables, dict) else {}
    )[0]


class InvalidOperationName(UserError):
    code = "BAD_REQUEST"
    default_message = "operationName must be a string"


class CostCache:
    """``query_cost`` remembered per document text, operation and the values of the
    variables it depends on (usually none, or a page size; a variable not sent is told
    apart from one sent as null, since a missing one takes its default)."""

    def __init__(self, maxsize: int = PARSE_CACHE_SIZE) -> None:
        self.maxsize = maxsize
        self._depends_on: OrderedDict[tuple[str, str | None], frozenset[str]] = OrderedDict()
        self._costs: OrderedDict[tuple[Any, ...], int] = OrderedDict()

    def cost(
        self,
        schema: GraphQLSchema,
        query: str,
        document: DocumentNode,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
    ) -> int:
        """``InvalidOperationName`` when the operation name is not a string."""
        if not (operation_name is None or isinstance(operation_name, str)):
            raise InvalidOperationName
        variables = variables if isinstance(variables, dict) else {}
        names = self._depends_on.get((query, operation_name))
        if names is not None:
            key = (query, operation_name, *_values(variables, names))
            if (cached := self._costs.get(key)) is not None:
                self._costs.move_to_end(key)
                return cached
        cost, names = _cost(schema, document, operation_name, variables)
        self._remember(self._depends_on, (query, operation_name), names)
        self._remember(self._costs, (query, operation_name, *_values(variables, names)), cost)
        return cost

    def _remember(self, cache: OrderedDict, key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.maxsize:
            cache.popitem(last=False)


def _values(variables: Mapping[str, Any], names: frozenset[str]) -> Iterator[Any]:
    for name in sorted(names):
        yield (name in variables, _hashable(variables.get(name)))


def _hashable(value: Any) -> Any:
    return value if isinstance(value, int | str | float | bool | None) else repr(value)
