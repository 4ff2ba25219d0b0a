"""Shard leases (esb/shards.py) on a real PostgreSQL database and on a SQLite file shared by the owners.

Each owner is a ``ShardLeases`` running in its own thread on its own engine, as worker processes would.
``Holders`` plays the consumers: it holds what each owner's ``on_change`` last said it owns, and records
a violation whenever an owner is told it gained a shard that another live owner still holds (that owner
has not stopped its consumer yet). Waits are bounded polls (a bound for a broken build, not a
measurement); leases are short so that the tests are quick.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from crm_core.db import create_db_engine
from esb.shards import ShardLeases, fair_share, metadata, shard_leases

LEASE = 1.0
#: seconds the consumers of a lost shard take to stop
STOPPING = 0.15
#: seconds a wait may take before the test fails (a bound, not a measurement)
BOUND = 20.0


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crm.db'}"
    return str(request.getfixturevalue("postgres_url"))


@dataclass
class Holders:
    """What each owner's consumers would be consuming, from its ``on_change`` calls (a lost shard is let go
    ``STOPPING`` seconds after the call began, as a consumer finishing its handler would)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    held: dict[int, str] = field(default_factory=dict)
    gained: list[tuple[float, str, int]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    dead: set[str] = field(default_factory=set)

    def on_change(self, owner: str) -> Callable[[frozenset[int]], None]:
        def changed(owned: frozenset[int]) -> None:
            with self.lock:
                if owner in self.dead:  # a crashed process calls nothing
                    return
                before = {shard for shard, holder in self.held.items() if holder == owner}
            if before - owned:  # consumers take a moment to stop (a handler finishing), as in the worker
                time.sleep(STOPPING)
            with self.lock:
                for shard in before - owned:
                    if self.held.get(shard) == owner:
                        del self.held[shard]
                for shard in sorted(owned - before):
                    if shard in self.held:
                        self.violations.append(f"{owner} gained shard {shard} while {self.held[shard]} held it")
                    self.held[shard] = owner
                    self.gained.append((time.time(), owner, shard))

        return changed

    def of(self, owner: str) -> set[int]:
        with self.lock:
            return {shard for shard, holder in self.held.items() if holder == owner}

    def crash(self, owner: str) -> None:
        """``owner``'s process died: its consumers are gone with it."""
        with self.lock:
            self.dead.add(owner)
            for shard in [s for s, holder in self.held.items() if holder == owner]:
                del self.held[shard]


class Owner:
    """One worker process's leases, running in a thread on an engine of its own."""

    def __init__(self, url: str, name: str, shards: int, holders: Holders, lease: float = LEASE) -> None:
        self.name = name
        self.engine = create_db_engine(url)
        self.leases = ShardLeases(self.engine, name, shards, lease_seconds=lease, scope="test")
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=self.leases.run, args=(self.stop_event, holders.on_change(name)), name=name, daemon=True
        )
        self.thread.start()

    def stop(self, *, release: bool = True) -> None:
        self.stop_event.set()
        self.thread.join(BOUND)
        assert not self.thread.is_alive()
        if release:
            self.leases.release_all()

    def close(self) -> None:
        if self.thread.is_alive():
            self.stop()
        self.engine.dispose()


@pytest.fixture
def owners(database_url: str) -> Iterator[Callable[..., Owner]]:
    started: list[Owner] = []

    def start(name: str, shards: int, holders: Holders, lease: float = LEASE) -> Owner:
        owner = Owner(database_url, name, shards, holders, lease)
        started.append(owner)
        return owner

    yield start
    for owner in started:
        owner.close()


def eventually(condition: Callable[[], bool], what: str, bound: float = BOUND) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {bound} s: {what}")
        time.sleep(0.02)


def shares(holders: Holders, names: list[str]) -> list[int]:
    return sorted(len(holders.of(name)) for name in names)


def test_fair_share_spreads_the_remainder_over_the_first_owners_by_name() -> None:
    assert [fair_share(4, ["a", "b", "c"], me) for me in "abc"] == [2, 1, 1]
    assert [fair_share(8, ["a", "b", "c", "d"], me) for me in "abcd"] == [2, 2, 2, 2]
    assert fair_share(3, [], "a") == 3  # alone, its own heartbeat not yet counted
    assert [fair_share(1, ["a", "b"], me) for me in "ab"] == [1, 0]


def test_bounds_are_checked(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    for shards in (0, 65):
        with pytest.raises(ValueError, match="shards"):
            ShardLeases(engine, "w", shards)
    with pytest.raises(ValueError, match="owner"):
        ShardLeases(engine, "w" * 101, 4)
    with pytest.raises(ValueError, match="lease"):
        ShardLeases(engine, "w", 4, lease_seconds=0.01)


def test_one_worker_owns_every_shard(owners: Callable[..., Owner]) -> None:
    holders = Holders()
    owners("w1", 8, holders)
    eventually(lambda: holders.of("w1") == set(range(8)), "w1 owns shards 0..7")
    assert not holders.violations


@pytest.mark.parametrize("shards", [4, 8])
def test_four_workers_converge_to_equal_shares(owners: Callable[..., Owner], shards: int) -> None:
    holders = Holders()
    names = [f"w{index}" for index in range(4)]
    for name in names:
        owners(name, shards, holders)
    eventually(lambda: shares(holders, names) == [shards // 4] * 4, f"4 workers hold {shards // 4} each")
    assert not holders.violations


def test_a_newcomer_gets_its_share_from_the_others(owners: Callable[..., Owner]) -> None:
    holders = Holders()
    first = owners("a", 8, holders)
    eventually(lambda: len(holders.of("a")) == 8, "a owns all 8")
    owners("b", 8, holders)
    eventually(lambda: shares(holders, ["a", "b"]) == [4, 4], "a and b hold 4 each")
    # the shards given up were the highest ones
    assert holders.of("a") == {0, 1, 2, 3}
    owners("c", 8, holders)
    eventually(lambda: shares(holders, ["a", "b", "c"]) == [2, 3, 3], "3 workers hold 3/3/2")
    first.stop()
    eventually(lambda: shares(holders, ["b", "c"]) == [4, 4], "after a stopped, b and c hold 4 each")
    assert not holders.violations


def test_a_crashed_workers_shards_are_taken_after_its_lease(owners: Callable[..., Owner]) -> None:
    holders = Holders()
    crashed = owners("a", 6, holders)
    owners("b", 6, holders)
    owners("c", 6, holders)
    eventually(lambda: shares(holders, ["a", "b", "c"]) == [2, 2, 2], "3 workers hold 2 each")
    lost = holders.of("a")
    holders.crash("a")  # from now on a calls nothing: its process is gone
    crashed.stop(release=False)
    with crashed.engine.connect() as conn:
        until = {
            row.shard: row.until
            for row in conn.execute(
                select(shard_leases).where(shard_leases.c.owner == "a", shard_leases.c.scope == "test")
            )
        }
    assert set(until) == lost
    eventually(lambda: shares(holders, ["b", "c"]) == [3, 3], "b and c took over a's shards")
    taken_at = {shard: at for at, _, shard in holders.gained if shard in lost}
    early = {shard: round(until[shard] - at, 3) for shard, at in taken_at.items() if at < until[shard]}
    assert not early, f"shards taken before a's lease ran out (seconds early): {early}"
    assert not holders.violations


def _hold_write_lock(url: str) -> tuple[Engine, Callable[[], None]]:
    """Block every writer of the leases (a database hung for the owners); returns the release."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        raw = engine.raw_connection()
        raw.driver_connection.isolation_level = None  # type: ignore[union-attr]
        raw.driver_connection.execute("BEGIN EXCLUSIVE")  # type: ignore[union-attr]
    else:
        engine = create_engine(url)
        raw = engine.raw_connection()
        cursor = raw.cursor()
        cursor.execute("LOCK TABLE esb_shard_leases, esb_workers IN ACCESS EXCLUSIVE MODE")

    def release() -> None:
        raw.rollback()
        raw.close()
        engine.dispose()

    return engine, release


def test_a_worker_whose_database_hangs_stops_consuming_before_its_lease_runs_out(
    owners: Callable[..., Owner], database_url: str
) -> None:
    holders = Holders()
    owner = owners("a", 4, holders)
    eventually(lambda: len(holders.of("a")) == 4, "a owns all 4")
    _, release = _hold_write_lock(database_url)
    try:
        # every round now hangs in the database; the owned set must be dropped all the same
        eventually(lambda: not holders.of("a"), "a dropped its shards while its round hung", bound=3 * LEASE + 5)
        assert owner.thread.is_alive()
    finally:
        release()
    eventually(lambda: len(holders.of("a")) == 4, "a owns all 4 again once the database answers")
    assert not holders.violations


def test_a_worker_cut_off_from_postgresql_drops_its_shards_before_others_take_them(
    postgres_url: str, postgres_server: str
) -> None:
    role = f"esb_shard_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    server = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    metadata.create_all(admin)
    with admin.connect() as conn:
        conn.execute(text(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"'))
    holders = Holders()
    try:
        cut_off = Owner(
            make_url(postgres_url).set(username=role).render_as_string(hide_password=False), "a", 4, holders
        )
        other = Owner(postgres_url, "b", 4, holders)
        try:
            eventually(lambda: shares(holders, ["a", "b"]) == [2, 2], "a and b hold 2 each")
            lost = holders.of("a")
            with server.connect() as conn:  # what a network partition between a and the database looks like
                conn.execute(text(f'ALTER ROLE "{role}" NOLOGIN'))
                conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"), {"r": role}
                )
            eventually(lambda: holders.of("b") == set(range(4)), "b took over a's shards")
            assert not holders.of("a")
            assert cut_off.thread.is_alive()
            assert lost and not holders.violations, holders.violations
        finally:
            cut_off.close()
            other.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
        admin.dispose()
        with server.connect() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        server.dispose()


def test_no_shard_is_ever_held_by_two_workers_while_they_come_and_go(owners: Callable[..., Owner]) -> None:
    holders = Holders()
    live = [owners(f"w{index}", 8, holders, 0.6) for index in range(4)]
    eventually(lambda: shares(holders, [o.name for o in live]) == [2, 2, 2, 2], "4 workers hold 2 each")
    for round_ in range(3):
        leaving = live.pop(0)
        leaving.stop()
        live.append(owners(f"n{round_}", 8, holders, 0.6))
        time.sleep(0.6)  # let the others react while the next one leaves (not an assertion)
    eventually(lambda: shares(holders, [o.name for o in live]) == [2, 2, 2, 2], "the 4 live workers hold 2 each")
    assert not holders.violations, holders.violations
    assert len(holders.gained) > 8
