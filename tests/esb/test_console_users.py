"""Console users and sessions: `esb users add` (no default account, scrypt hashes, bounds) and the signed
session cookie (a forged, altered or expired cookie is no session)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import select

from crm_core.db import create_db_engine, session_factory
from crm_core.models import ConsoleUser
from crm_core.users import Role, authenticate, check_password, hash_password, list_users
from esb.cli import cli
from esb.config import EsbSettings
from esb.console.render import highlighted, hourly, sparkline
from esb.console.session import SessionCodec, csrf_ok, session_secret


def esb(tmp_path: Path, *args: str, expect: int = 0) -> Result:
    env = {"ESB_CONFIG": "", "ESB_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == expect, (args, result.exit_code, result.output)
    return result


def test_users_are_added_with_a_role_and_a_scrypt_hash_and_nothing_else_can_log_in(tmp_path: Path) -> None:
    sessions = session_factory(create_db_engine(f"sqlite:///{tmp_path / 'crm.db'}"))
    esb(tmp_path, "migrate")
    assert list_users(sessions) == [], "no default account"

    password = tmp_path / "password"
    password.write_text("correct horse battery\n")
    esb(tmp_path, "users", "add", "anna", "--role", "operator", "--password-file", str(password))
    esb(tmp_path, "users", "add", "vic", "--role", "viewer", "--password-file", str(password))
    assert "anna\toperator" in esb(tmp_path, "users", "list").output
    with sessions() as session:
        stored = session.scalar(select(ConsoleUser.password_hash).where(ConsoleUser.name == "anna"))
    assert stored is not None and stored.startswith("scrypt$") and "horse" not in stored

    assert authenticate(sessions, "anna", "correct horse battery") is not None
    assert authenticate(sessions, "vic", "correct horse battery").role == Role.VIEWER  # type: ignore[union-attr]
    assert authenticate(sessions, "anna", "wrong horse battery") is None
    assert authenticate(sessions, "nobody", "correct horse battery") is None

    taken = esb(tmp_path, "users", "add", "anna", "--role", "viewer", "--password-file", str(password), expect=1)
    assert "exists already" in taken.output
    password.write_text("short\n")
    short = esb(tmp_path, "users", "add", "ben", "--role", "viewer", "--password-file", str(password), expect=1)
    assert "8 to 1024 characters" in short.output
    bad_role = esb(tmp_path, "users", "add", "ben", "--role", "admin", "--password-file", str(password), expect=2)
    assert "admin" in bad_role.output


def test_a_password_hash_is_salted_and_a_malformed_one_matches_nothing() -> None:
    first, second = hash_password("same password"), hash_password("same password")
    assert first != second and check_password("same password", first) and check_password("same password", second)
    assert not check_password("same password", "scrypt$broken")
    assert not check_password("same password", "plain$" + first)


def test_a_session_cookie_is_signed_and_expires(tmp_path: Path) -> None:
    settings = EsbSettings(data_dir=tmp_path)  # type: ignore[call-arg]
    secret = session_secret(settings)
    assert session_secret(settings) == secret, "generated once into the data dir"
    assert (tmp_path / "console_secret").stat().st_mode & 0o077 == 0
    codec = SessionCodec(secret, 1.0)
    session = codec.new("anna")
    cookie = codec.dump(session)
    assert codec.load(cookie) == session.__class__(session.user, session.csrf, int(session.expires), session.issued)
    assert codec.load(cookie[:-1] + ("0" if cookie[-1] != "0" else "1")) is None, "signature altered"
    payload, signature = cookie.rsplit(".", 1)
    assert codec.load(payload.replace(payload[2], "A" if payload[2] != "A" else "B", 1) + "." + signature) is None
    assert SessionCodec(b"another key", 1.0).load(cookie) is None
    assert codec.load("x" * 5000) is None and codec.load(None) is None
    expired = session.__class__("anna", "token", time.time() - 1, time.time() - 3601)
    assert codec.load(codec.dump(expired)) is None
    assert csrf_ok(session, session.csrf) and not csrf_ok(session, "other") and not csrf_ok(session, None)
    assert not csrf_ok(None, session.csrf)


def test_the_sparkline_counts_the_last_24_hours_and_a_body_is_escaped() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    times = [now - timedelta(minutes=5), now - timedelta(minutes=50), now - timedelta(hours=23, minutes=30)]
    times += [now - timedelta(hours=25), now + timedelta(minutes=1)]  # outside the window
    counts = hourly(times, now)
    assert len(counts) == 24 and counts[-1] == 2 and counts[0] == 1 and sum(counts) == 3
    assert "<title>3 in the last 24 h</title>" in sparkline(counts)
    shown = highlighted('{"name": "<script>alert(1)</script>", "n": 2, "ok": true}')
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert '<span class="j-key">&quot;name&quot;</span>' in shown and '<span class="j-number">2</span>' in shown
