"""Persisted documents: the query text is known to the server, the client sends a hash.

- Automatic persisted queries, in Apollo's wire format: ``extensions.persistedQuery =
  {"version": 1, "sha256Hash": "<hex>"}``. Hash only: the stored document runs, or the
  answer is ``PersistedQueryNotFound`` (HTTP 200, code ``PERSISTED_QUERY_NOT_FOUND``) and
  the client sends hash and query; the server checks the hash and stores the document in
  Redis (with a TTL) once it validates. A registration is bounded: the document's size
  (``PERSISTED_QUERY_TOO_LARGE``) and, in graphql_schema/gateway/admission.py, the registrations
  per client and the rate-limit budget. Documents are immutable by their hash, so each
  process also keeps the ones it has seen in a small in-memory LRU.
- Trusted documents (GraphQL-over-HTTP persisted documents): ``documentId:
  "sha256:<hex>"``, from an Apollo persisted-query manifest named in the settings and
  loaded once at start-up. In allowlist mode (global, or per API key) nothing else runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphql import GraphQLError, GraphQLSchema, parse, specified_rules
from strawberry.schema.schema import validate_document

from app.runtime import Runtime

APQ_VERSION = 1
DOCUMENT_ID_PREFIX = "sha256:"
MANIFEST_FORMAT = "apollo-persisted-query-manifest"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
LOCAL_CACHE_SIZE = 2048


class PersistedQueryError(Exception):
    """A persisted-document request the server cannot serve; nothing ran."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def not_found() -> PersistedQueryError:
    # The message is part of Apollo's protocol: clients match on it (or on the code).
    return PersistedQueryError(
        "PersistedQueryNotFound", code="PERSISTED_QUERY_NOT_FOUND", status=200
    )


def too_large_to_register(size: int, limit: int) -> PersistedQueryError:
    return PersistedQueryError(
        f"The document is {size} bytes; a persisted query may be at most {limit} bytes",
        code="PERSISTED_QUERY_TOO_LARGE",
        status=400,
    )


def trusted_document_required() -> PersistedQueryError:
    return PersistedQueryError(
        "Only trusted documents may run for this client: send a documentId",
        code="TRUSTED_DOCUMENT_REQUIRED",
        status=403,
    )


class InvalidManifest(ValueError):
    """The trusted-documents manifest cannot be used: the server refuses to start."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class TrustedDocuments:
    """SHA-256 (hex) -> document text."""

    def __init__(self, documents: Mapping[str, str] | None = None) -> None:
        self._documents = dict(documents or {})

    def __len__(self) -> int:
        return len(self._documents)

    def get(self, sha256: str) -> str | None:
        return self._documents.get(sha256)

    def contains(self, text: str) -> bool:
        return bool(self._documents) and sha256_hex(text) in self._documents

    @classmethod
    def load(cls, path: Path | None, schema: GraphQLSchema) -> TrustedDocuments:
        """An Apollo manifest: ``{"format": "apollo-persisted-query-manifest", "version": 1,
        "operations": [{"id", "body", "name", "type"}]}``. Every id must be the SHA-256
        of its body, and every body must validate against the schema."""
        if path is None:
            return cls()
        try:
            manifest = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InvalidManifest(f"cannot read {path}: {error}") from error
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise InvalidManifest(f"{path} is not an {MANIFEST_FORMAT}")
        documents = {}
        for operation in manifest.get("operations") or ():
            body, given = operation.get("body"), str(operation.get("id", "")).lower()
            if not isinstance(body, str) or sha256_hex(body) != given.removeprefix("sha256:"):
                name = operation.get("name")
                raise InvalidManifest(f"{path}: the id of {name!r} is not the SHA-256 of its body")
            try:
                errors = validate_document(schema, parse(body), tuple(specified_rules))
            except GraphQLError as error:
                errors = [error]
            if errors:
                raise InvalidManifest(f"{path}: {operation.get('name')!r}: {errors[0].message}")
            documents[sha256_hex(body)] = body
        return cls(documents)


class AutomaticPersistedQueries:
    """APQ documents in Redis under the runtime's key prefix, with a per-process LRU."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._local: OrderedDict[str, str] = OrderedDict()

    async def get(self, sha256: str) -> str | None:
        text = self._local.get(sha256)
        if text is None:
            raw = await self.rt.redis.get(self._key(sha256))
            if raw is None:
                return None
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._remember(sha256, text)
        return text

    async def put(self, sha256: str, text: str) -> None:
        ttl = self.rt.settings.persisted_query_ttl_seconds
        await self.rt.redis.set(self._key(sha256), text.encode(), ex=ttl)
        self._remember(sha256, text)

    def _remember(self, sha256: str, text: str) -> None:
        self._local[sha256] = text
        self._local.move_to_end(sha256)
        while len(self._local) > LOCAL_CACHE_SIZE:
            self._local.popitem(last=False)

    def _key(self, sha256: str) -> str:
        return self.rt.redis_key("apq", sha256)


@dataclass(frozen=True, slots=True)
class Document:
    """The text to run, and what the request said about it."""

    query: str | None
    register_as: str | None = None  # APQ hash to store the text under once it validates


def _apq_hash(persisted: Any) -> str:
    if not isinstance(persisted, dict) or persisted.get("version") != APQ_VERSION:
        raise PersistedQueryError(
            "Unsupported persisted query version", code="PERSISTED_QUERY_NOT_SUPPORTED", status=400
        )
    sha256 = persisted.get("sha256Hash")
    if not isinstance(sha256, str) or not _SHA256.match(sha256.lower()):
        raise PersistedQueryError(
            "sha256Hash must be 64 hexadecimal characters",
            code="PERSISTED_QUERY_HASH_MISMATCH",
            status=400,
        )
    return sha256.lower()


def _trusted_text(trusted: TrustedDocuments, document_id: Any) -> str:
    if not isinstance(document_id, str) or not document_id.startswith(DOCUMENT_ID_PREFIX):
        raise PersistedQueryError(
            'documentId must look like "sha256:<64 hexadecimal characters>"',
            code="TRUSTED_DOCUMENT_NOT_FOUND",
            status=400,
        )
    text = trusted.get(document_id.removeprefix(DOCUMENT_ID_PREFIX).lower())
    if text is None:
        raise PersistedQueryError(
            "No trusted document has this documentId",
            code="TRUSTED_DOCUMENT_NOT_FOUND",
            status=400,
        )
    return text


async def resolve_document(
    *,
    query: str | None,
    extensions: Mapping[str, Any] | None,
    document_id: Any,
    trusted: TrustedDocuments,
    apq: AutomaticPersistedQueries,
    allowlist: bool,
    max_register_bytes: int,
) -> Document:
    """The document a request asks to run: by ``documentId``, by APQ hash (with or
    without the text), or as plain text. In allowlist mode only trusted documents; a
    document to register at most ``max_register_bytes`` long (UTF-8)."""
    if document_id is not None:
        if query is not None:
            raise PersistedQueryError(
                "Send either documentId or query, not both", code="BAD_REQUEST", status=400
            )
        return Document(_trusted_text(trusted, document_id))
    persisted = extensions.get("persistedQuery") if extensions else None
    if persisted is not None:
        sha256 = _apq_hash(persisted)
        known = trusted.get(sha256)
        if query is None:
            if known is not None:
                return Document(known)
            if allowlist:
                raise trusted_document_required()
            text = await apq.get(sha256)
            if text is None:
                raise not_found()
            return Document(text)
        if sha256_hex(query) != sha256:
            raise PersistedQueryError(
                "provided sha does not match query",
                code="PERSISTED_QUERY_HASH_MISMATCH",
                status=400,
            )
        if known is not None:
            return Document(query)
        if allowlist:
            raise trusted_document_required()
        if (size := len(query.encode())) > max_register_bytes:
            raise too_large_to_register(size, max_register_bytes)
        return Document(query, register_as=sha256)
    if allowlist and (query is None or not trusted.contains(query)):
        raise trusted_document_required()
    return Document(query)
