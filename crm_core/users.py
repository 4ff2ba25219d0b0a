"""The web console's users: names, roles and scrypt password hashes in the CRM database.

There is no default account: ``esb users add`` creates each one. A password is kept as
``scrypt$n$r$p$salt$hash`` (hex; ``hashlib.scrypt``, a random 16-byte salt), checked in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm_core.errors import InvalidRequest
from crm_core.models import ConsoleUser

#: scrypt cost (2**14: about 16 MiB and tens of ms a check, RFC 7914's interactive-login figure)
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
#: bounds of what a user gives: a password longer than this is refused before it is hashed
NAME_MAX = 64
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class Role(StrEnum):
    #: sees, replays, edits, discards, acknowledges
    OPERATOR = "operator"
    #: sees only
    VIEWER = "viewer"


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    #: sessions issued at or before this time (Unix seconds) are ended (logout); None: none ended
    sessions_after: float | None = None


def hash_password(password: str) -> str:
    """``password`` as ``scrypt$n$r$p$salt$hash``; ``InvalidRequest`` if shorter than ``PASSWORD_MIN``
    or longer than ``PASSWORD_MAX`` characters."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidRequest("password", f"must have {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (``hash_password``'s form); False for a malformed hash."""
    if len(password) > PASSWORD_MAX:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(digest)
        given = hashlib.scrypt(
            password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(given, expected)


def add_user(sessions: sessionmaker[Session], name: str, role: Role, password: str) -> User:
    """Create a user; ``InvalidRequest`` for a malformed name or password, or a name already taken."""
    if not _NAME.match(name):
        raise InvalidRequest("name", "1 to 64 letters, digits and . _ @ -, starting with a letter or digit")
    row = ConsoleUser(name=name, role=role.value, password_hash=hash_password(password))
    try:
        with sessions.begin() as session:
            session.add(row)
    except IntegrityError as exc:
        raise InvalidRequest("name", f"a user {name!r} exists already") from exc
    return User(name, role)


def authenticate(sessions: sessionmaker[Session], name: str, password: str) -> User | None:
    """The user ``name`` if ``password`` is theirs, else None (an unknown name costs a hash too, so the
    answer's time does not tell which names exist)."""
    user = get_user(sessions, name[:NAME_MAX])
    with sessions() as session:
        stored = session.scalar(select(ConsoleUser.password_hash).where(ConsoleUser.name == name[:NAME_MAX]))
    if user is None or stored is None:
        check_password(password, _DUMMY_HASH)
        return None
    return user if check_password(password, stored) else None


def get_user(sessions: sessionmaker[Session], name: str) -> User | None:
    """The user ``name`` with their current role, or None."""
    with sessions() as session:
        row = session.scalar(select(ConsoleUser).where(ConsoleUser.name == name[:NAME_MAX]))
        return None if row is None else User(row.name, Role(row.role), row.sessions_after)


def end_sessions(sessions: sessionmaker[Session], name: str, at: float) -> None:
    """End every session of ``name`` issued at or before ``at`` (Unix seconds): logout, everywhere."""
    with sessions.begin() as session:
        row = session.scalar(select(ConsoleUser).where(ConsoleUser.name == name[:NAME_MAX]))
        if row is not None:
            row.sessions_after = at


def list_users(sessions: sessionmaker[Session]) -> list[User]:
    """Every user, by name."""
    with sessions() as session:
        return [
            User(row.name, Role(row.role)) for row in session.scalars(select(ConsoleUser).order_by(ConsoleUser.name))
        ]


_DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * 16}${'00' * 64}"

__all__ = ["Role", "User", "add_user", "authenticate", "check_password", "get_user", "hash_password", "list_users"]
