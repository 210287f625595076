"""Ids of ours derived from a key (a caller's client order id, a copy's key): one rule,
written in Python for placement and in SQL for the statements that find a bot's orders
by the ids they were sent under. Both must give the same id for every key, or a bot's
order would be placed and then never found."""

from __future__ import annotations

import re

from app.exchanges.domain.orders import (
    CLIENT_ORDER_ID_PREFIX,
    derived_client_order_id,
    derived_client_order_id_sql,
)
from app.exchanges.venue import exchange_client_id
from app.social.domain.copying import exchange_copy_client_order_id
from db.raw import driver

KEYS = [
    "a", "bot-17-dca-0001", "x" * 64, "é€𝄞", "ключ", "tab\there", "'; DROP TABLE users; --",
    "", " ", "0", "copy-1-2",
]  # fmt: skip


async def test_the_sql_rendering_derives_the_same_ids_as_python(rt):
    sql = derived_client_order_id_sql(CLIENT_ORDER_ID_PREFIX, "k")
    async with rt.reads() as session:
        connection = await driver(session)
        rows = await connection.fetch(f"SELECT k, {sql} AS id FROM unnest($1::text[]) AS k", KEYS)
    assert {r["k"]: r["id"] for r in rows} == {k: derived_client_order_id("co", k) for k in KEYS}
    assert {exchange_client_id(k) for k in KEYS} == {r["id"] for r in rows}


def test_derived_ids_fit_every_exchange_and_differ_by_key_and_prefix():
    ids = [exchange_client_id(k) for k in KEYS] + [
        exchange_copy_client_order_id(f, leader) for f in (1, 2) for leader in (1, 2, 12)
    ]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z0-9]{18}", i) for i in ids)  # Kraken 18, OKX [a-z0-9]
    assert exchange_copy_client_order_id(1, 2) == exchange_copy_client_order_id(1, 2)
    assert exchange_copy_client_order_id(1, 2).startswith("cp")
