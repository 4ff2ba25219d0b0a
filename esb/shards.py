"""Shard ownership: which worker process consumes which shard of the route queues.

A sharded route queue is ``shards`` queues ``<queue>.0`` .. ``<queue>.<shards-1>``, one customer's events
always in the same one, each with a single active consumer (``QueueSpec``). The transport's exclusivity
alone would make the first worker to subscribe active on every shard; these leases spread the shards over
the live workers instead, and hand a dead worker's shards to the others. A shard is an index shared by
every route: the owner of shard 2 consumes ``<queue>.2`` of every sharded route (and, for shard 0, the
queue of every route that is not sharded).

Two tables in the CRM database (SQLite file shared by the processes, or PostgreSQL), with their own
``MetaData``, created on first use: ``esb_workers`` (a heartbeat per worker process: ``seen_until``) and
``esb_shard_leases`` (one row per shard: its ``owner`` and ``until``, epoch seconds). Both are keyed by a
``scope`` (the namespace), so several deployments can share one database. One row per shard is the
constraint that no two owners hold a shard at once; every change of it is a compare-and-set (an
``UPDATE`` whose ``WHERE`` repeats what was read), and on PostgreSQL a round first locks the scope's lease
rows in shard order (``SELECT ... FOR UPDATE``), so rounds of different workers run one after the other and
cannot deadlock; on SQLite the round's first statement is a write, which takes the database's write lock.

A round (every ``lease_seconds / 3``, one short transaction): heartbeat, count the live workers W, compute
this worker's fair share (``fair_share``: ``shards // W``, one more for the first ``shards % W`` workers by
owner name, so 4 shards over 3 workers are 2/1/1, never 2/2/0), renew its own leases, take free or
expired ones up to the share (lowest first), and mark those above it (highest first) as surplus: they are
dropped from the owned set (``on_change``, which stops their consumers) and released in the next round,
right after. Times are the database's clock on PostgreSQL (workers may run on several machines) and the
machine's on SQLite (a file is shared by one machine's processes).

A worker that cannot renew (database down or hung) keeps its shards until ``lease - margin`` after the
start of its last successful round (by its own monotonic clock), then drops them all; another worker can
take them only once ``until`` has passed in the database, which is after that. The round runs in a helper
thread, so a database call that hangs does not keep the shards beyond that point.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass

import structlog
from sqlalchemy import (
    Column,
    Connection,
    Double,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from canonical_model.truncation import truncate

log = structlog.get_logger(__name__)

metadata = MetaData()

#: a heartbeat per worker process: it counts as live while ``seen_until`` (epoch seconds) is ahead
workers = Table(
    "esb_workers",
    metadata,
    Column("scope", String(100), primary_key=True),
    Column("owner", String(100), primary_key=True),
    Column("seen_until", Double, nullable=False),
)

#: one row per shard: held by ``owner`` until ``until`` (epoch seconds); free when both are NULL
shard_leases = Table(
    "esb_shard_leases",
    metadata,
    Column("scope", String(100), primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("owner", String(100), nullable=True),
    Column("until", Double, nullable=True),
)

SHARDS_MAX = 64
OWNER_MAX = 100
SCOPE_MAX = 100
LEASE_MIN = 0.3
LEASE_MAX = 3600.0
#: a worker row not seen for this many leases is deleted by the next round of another worker
PRUNE_AFTER_LEASES = 20
#: characters of a database error kept in a log line
ERROR_MAX = 300

OnChange = Callable[[frozenset[int]], None]


def fair_share(shards: int, live: Sequence[str], owner: str) -> int:
    """How many of ``shards`` ``owner`` should hold while the workers ``live`` (with or without ``owner``
    itself) are alive: ``shards // W``, plus one for the first ``shards % W`` of them by name."""
    ranked = sorted({*live, owner})
    count = len(ranked)
    return shards // count + (1 if ranked.index(owner) < shards % count else 0)


@dataclass(frozen=True)
class _Outcome:
    owned: frozenset[int]
    surplus: frozenset[int]
    workers: int


class ShardLeases:
    """Leases of the shards ``0 .. shards-1`` for the worker ``owner``, in ``engine``'s database.

    ``owner``: a name unique to this process (1 to ``OWNER_MAX`` characters, e.g. host:pid:random);
    ``shards``: 1 to ``SHARDS_MAX``; ``lease_seconds``: how long a lease lasts without renewal
    (``LEASE_MIN`` to ``LEASE_MAX``; rounds run every third of it); ``scope``: the set of workers that share
    the shards (the namespace; up to ``SCOPE_MAX`` characters). ``ValueError`` for values out of range.
    Database errors are logged and never raised by ``run``.
    """

    def __init__(
        self,
        engine: Engine,
        owner: str,
        shards: int,
        lease_seconds: float = 10.0,
        *,
        scope: str = "esb",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= shards <= SHARDS_MAX:
            raise ValueError(f"shards must be 1 to {SHARDS_MAX}, not {shards}")
        if not owner or len(owner) > OWNER_MAX:
            raise ValueError(f"owner must be 1 to {OWNER_MAX} characters")
        if not scope or len(scope) > SCOPE_MAX:
            raise ValueError(f"scope must be 1 to {SCOPE_MAX} characters")
        if not LEASE_MIN <= lease_seconds <= LEASE_MAX:
            raise ValueError(f"lease_seconds must be {LEASE_MIN} to {LEASE_MAX}, not {lease_seconds}")
        self._engine = engine
        self.owner = owner
        self.shards = shards
        self.scope = scope
        self.lease_seconds = lease_seconds
        #: seconds between rounds
        self.interval = lease_seconds / 3
        #: the owned set is dropped this long before the lease would run out in the database
        self.margin = lease_seconds / 4
        self._clock = clock
        self._ready = False
        self._owned: frozenset[int] = frozenset()
        #: local (monotonic) time until which the owned set is valid
        self._deadline = 0.0
        #: shards dropped from the owned set, released at the start of the next round
        self._surplus: frozenset[int] = frozenset()
        self._lock = threading.Lock()

    @property
    def owned(self) -> frozenset[int]:
        """The shards this worker holds now (the last set given to ``on_change``)."""
        return self._owned

    # -- database -----------------------------------------------------------------------------------

    def _create(self) -> None:
        if self._ready:
            return
        try:
            metadata.create_all(self._engine)
        except SQLAlchemyError:  # another process created them at the same moment
            metadata.create_all(self._engine)
        rows = [{"scope": self.scope, "shard": shard, "owner": None, "until": None} for shard in range(self.shards)]
        with self._engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(dialect.insert(shard_leases).values(rows).on_conflict_do_nothing())
        self._ready = True

    def _now(self, conn: Connection) -> float:
        if conn.dialect.name == "postgresql":
            value = conn.scalar(select(func.extract("epoch", func.clock_timestamp())))
            if value is not None:
                return float(value)
        return time.time()

    def _round(self) -> _Outcome:
        """One round in one transaction (see the module's docstring); returns the shards held after it."""
        self._create()
        me = self.owner
        in_scope = shard_leases.c.scope == self.scope
        with self._engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            dialect = postgresql if postgres else sqlite
            leases_read = (
                select(shard_leases.c.shard, shard_leases.c.owner, shard_leases.c.until)
                .where(in_scope, shard_leases.c.shard < self.shards)
                .order_by(shard_leases.c.shard)
            )
            if postgres:  # the serialisation point of the scope's rounds (always in shard order: no deadlock)
                conn.execute(
                    select(shard_leases.c.shard).where(in_scope).order_by(shard_leases.c.shard).with_for_update()
                )
            now = self._now(conn)
            heartbeat = dialect.insert(workers).values(scope=self.scope, owner=me, seen_until=now + self.lease_seconds)
            # on SQLite this first write takes the write lock for the rest of the round
            conn.execute(
                heartbeat.on_conflict_do_update(
                    index_elements=["scope", "owner"], set_={"seen_until": heartbeat.excluded.seen_until}
                )
            )
            if self._surplus:
                conn.execute(
                    update(shard_leases)
                    .where(in_scope, shard_leases.c.owner == me, shard_leases.c.shard.in_(sorted(self._surplus)))
                    .values(owner=None, until=None)
                )
            conn.execute(
                delete(workers).where(
                    workers.c.scope == self.scope,
                    workers.c.seen_until < now - PRUNE_AFTER_LEASES * self.lease_seconds,
                )
            )
            live = list(
                conn.scalars(select(workers.c.owner).where(workers.c.scope == self.scope, workers.c.seen_until > now))
            )
            share = fair_share(self.shards, live, me)
            rows = conn.execute(leases_read).all()
            until = now + self.lease_seconds
            mine = sorted(row.shard for row in rows if row.owner == me)
            if mine:  # compare-and-set: only rows still ours
                conn.execute(
                    update(shard_leases)
                    .where(in_scope, shard_leases.c.owner == me, shard_leases.c.shard.in_(mine))
                    .values(until=until)
                )
            keep, surplus = mine[:share], mine[share:]
            free = [row.shard for row in rows if row.owner is None or (row.owner != me and (row.until or 0.0) <= now)]
            taken: list[int] = []
            for shard in free:
                if len(keep) + len(taken) >= share:
                    break
                # compare-and-set: the row must still be free or expired when it is written
                result = conn.execute(
                    update(shard_leases)
                    .where(
                        in_scope,
                        shard_leases.c.shard == shard,
                        (shard_leases.c.owner.is_(None)) | (shard_leases.c.until <= now),
                    )
                    .values(owner=me, until=until)
                )
                if result.rowcount == 1:
                    taken.append(shard)
        return _Outcome(owned=frozenset(keep + taken), surplus=frozenset(surplus), workers=max(len(live), 1))

    def release_all(self) -> None:
        """Give up every lease of this owner and its heartbeat (at stop, once its consumers have stopped).
        A database error is logged: the leases then run out by themselves."""
        with self._lock:
            self._owned = frozenset()
            self._surplus = frozenset()
        try:
            with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    in_scope = shard_leases.c.scope == self.scope
                    conn.execute(
                        select(shard_leases.c.shard).where(in_scope).order_by(shard_leases.c.shard).with_for_update()
                    )
                conn.execute(
                    update(shard_leases)
                    .where(shard_leases.c.scope == self.scope, shard_leases.c.owner == self.owner)
                    .values(owner=None, until=None)
                )
                conn.execute(delete(workers).where(workers.c.scope == self.scope, workers.c.owner == self.owner))
        except SQLAlchemyError as exc:
            log.warning("shard leases not released", owner=self.owner, error=truncate(str(exc), ERROR_MAX))

    # -- the loop -----------------------------------------------------------------------------------

    def _publish(self, owned: frozenset[int], on_change: OnChange) -> None:
        with self._lock:
            if owned == self._owned:
                return
            self._owned = owned
        log.info("shards owned", owner=self.owner, shards=sorted(owned), of=self.shards)
        try:
            on_change(owned)
        except Exception:  # the consumers' business; the leases go on
            log.exception("shard change failed", owner=self.owner, shards=sorted(owned))

    def run(self, stop: threading.Event, on_change: OnChange) -> None:
        """Hold this worker's share of the shards until ``stop`` is set; call ``on_change`` (in this thread)
        with the owned set whenever it changes: before shards are released (so their consumers stop first)
        and after shards are taken. Ends with ``on_change(frozenset())`` when it held any; the caller then
        calls ``release_all``. Database errors and hangs: the owned set is kept until ``lease_seconds -
        margin`` after the start of the last successful round, then dropped."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"shard-leases-{self.owner[:20]}")
        pending: Future[_Outcome] | None = None
        started = 0.0
        next_round = self._clock()
        failures = 0
        try:
            while not stop.is_set():
                now = self._clock()
                if self._owned and now >= self._deadline:
                    log.warning(
                        "shard leases lapsed: not renewed in time", owner=self.owner, shards=sorted(self._owned)
                    )
                    self._publish(frozenset(), on_change)
                if pending is None and now >= next_round:
                    started, next_round = now, now + self.interval
                    pending = pool.submit(self._round)
                wake = next_round if pending is None else now + self.interval
                if self._owned:
                    wake = min(wake, self._deadline)
                timeout = min(max(wake - now, 0.0), self.interval)
                if pending is None:
                    stop.wait(timeout)
                    continue
                wait_for([pending], timeout=timeout)
                if not pending.done():
                    continue
                future, pending = pending, None
                try:
                    outcome = future.result()
                except SQLAlchemyError as exc:
                    failures += 1
                    if failures == 1 or failures % 10 == 0:
                        log.warning(
                            "shard leases not renewed",
                            owner=self.owner,
                            failures=failures,
                            error=truncate(f"{type(exc).__name__}: {exc}", ERROR_MAX),
                        )
                    continue
                if failures:
                    log.info("shard leases renewed again", owner=self.owner, failures=failures)
                failures = 0
                deadline = started + self.lease_seconds - self.margin
                if self._clock() >= deadline:  # the round took too long to count: the next one starts now
                    continue
                self._deadline = deadline
                self._surplus = outcome.surplus
                if outcome.surplus:
                    next_round = self._clock()  # release them right after their consumers stopped
                self._publish(outcome.owned, on_change)
        finally:
            self._publish(frozenset(), on_change)
            if pending is not None:  # a round under way would take or renew leases after release_all
                wait_for([pending], timeout=self.lease_seconds)
            pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["OWNER_MAX", "SHARDS_MAX", "ShardLeases", "fair_share", "metadata", "shard_leases", "workers"]
