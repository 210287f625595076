"""The matching engine of one market, around the pure ``OrderBook``: its single writer.

Its modules: ``runner`` (ownership, the loop, one batch), ``market`` (the in-memory
market and what commands do to it), ``state`` (live orders, holds, the batch),
``settlement`` (amounts, holds, positions), ``events`` (a batch's outbox events) and
``sql`` (what the engine reads, and the two statements that write a batch). Nothing is
imported here: walking the package (``pkgutil``) must not load the engine.

Ownership. ``MarketEngine.run`` holds the PostgreSQL advisory lock (ENGINE_LOCK, market
id) on its own connection and does every write on that same connection, so an engine
that lost its connection (and with it the lock) cannot commit anything more. A standby
engine (another process, ``python -m app engine``) retries the lock every
``TRADING_ENGINE_TAKEOVER_SECONDS`` and, once it has it, rebuilds the book from
PostgreSQL: the resting orders (with their queue priority and fee accumulator) as of
``markets.applied_seq``, then the commands after it.

Batches. The engine reads the commands after the last one it applied (woken by NOTIFY
``engine_wake``, or every poll interval), applies them to the book in sequence, and in
ONE transaction writes what they did: fills, their ledger settlement (linked transfers
between both users and the fee account), order updates, hold changes, positions, outbox
events (order book delta, trades, ticker, each user's orders and fills), the commands'
outcomes and ``markets.applied_seq`` / ``book_seq`` / ``last_price``, then NOTIFY
``engine_applied``. If the transaction fails the in-memory book is thrown away and
rebuilt from PostgreSQL, which still holds the state before the batch.

A batch costs the same round trips however many commands it has: BEGIN, the commands,
the orders they name (when not in memory), one statement locking what it settles
(``_LOCK_SQL``: accounts in primary-key order, positions), one writing it all
(``_WRITE_SQL``), COMMIT. The ledger entries of trades and releases are deferred
(``JournalBatch.defer``) until that lock; only a hold that may be refused (an amend that
needs more, a bracket's exits) locks its accounts at once.

Matching on placement. Where the process placing orders runs the market's engine, the
placement's transaction applies them (``apply_placed``, under ``MarketEngine.lock``, which
``step`` holds too): no batch of the engine's own, no NOTIFY either way. The engine is
``dirty`` from the moment it applies until the placement reports its COMMIT (``settled``);
a dirty engine rebuilds its book before its next batch.

Consequences. What follows from a command rather than from the log (an OCO sibling's
cancel after a fill or a trigger, a stop order that trades triggered, a bracket's exits
once its entry has filled, a GTD expiry) is applied with ``OrderBook.apply_consequence``
under the command's seq and committed with it. The trigger engine lives here too: the
market's conditional orders, evaluated against every trade price, each fired exactly
once (its status TRIGGERED commits with the fills it caused). Money: ``settlement``.
"""
