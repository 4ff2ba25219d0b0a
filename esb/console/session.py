"""The console's session cookie: signed (HMAC-SHA256), holding the user's name, a CSRF token and an expiry.

The cookie is ``<payload>.<signature>``, the payload base64url JSON ``{"u": name, "c": csrf, "e": expiry}``
(``u`` empty before login: the login form has a CSRF token too). Nothing secret is in it; a cookie whose
signature does not match, or that expired, is no session. The signing key is the ``console.session_secret``
setting, else a random key generated once into ``data_dir/console_secret`` (mode 0600).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from esb.config import EsbSettings

COOKIE = "esb_console"
#: a cookie longer than this is not read (a session's is about 150 bytes)
COOKIE_MAX = 1024
SECRET_FILE = "console_secret"


@dataclass(frozen=True)
class Session:
    """``user``: the logged-in user's name, empty before login; ``csrf``: the token every form posts back;
    ``expires`` and ``issued``: Unix seconds."""

    user: str
    csrf: str
    expires: float
    issued: float


def session_secret(settings: EsbSettings) -> bytes:
    """The signing key: the setting's, else the one in ``data_dir/console_secret`` (created on first use)."""
    configured = settings.console.session_secret
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value().encode("utf-8")
    path = Path(settings.data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another console created it in between: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(32))
    return path.read_text().strip().encode("utf-8")


class SessionCodec:
    """Signs and reads session cookies with ``secret``; a session lasts ``hours``."""

    def __init__(self, secret: bytes, hours: float) -> None:
        self._secret = secret
        self._seconds = hours * 3600

    def new(self, user: str = "") -> Session:
        """A fresh session (a new CSRF token) for ``user`` (empty: not logged in)."""
        now = time.time()
        return Session(user, secrets.token_urlsafe(24), now + self._seconds, now)

    def dump(self, session: Session) -> str:
        payload = (
            base64.urlsafe_b64encode(
                json.dumps(
                    {"u": session.user, "c": session.csrf, "e": int(session.expires), "i": session.issued}
                ).encode("utf-8")
            )
            .decode("ascii")
            .rstrip("=")
        )  # no "=": the cookie needs no quoting
        return f"{payload}.{self._sign(payload)}"

    def load(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or None if absent, too long, forged, malformed or expired."""
        if not cookie or len(cookie) > COOKIE_MAX or "." not in cookie:
            return None
        payload, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload.encode("ascii") + b"=" * (-len(payload) % 4)))
            session = Session(str(data["u"]), str(data["c"]), float(data["e"]), float(data["i"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        return session if session.expires > time.time() else None

    @property
    def max_age(self) -> int:
        return int(self._seconds)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).hexdigest()


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """Whether a posted ``token`` is the session's CSRF token (constant-time)."""
    return session is not None and bool(token) and hmac.compare_digest(session.csrf, (token or "")[:100])


__all__ = ["COOKIE", "Session", "SessionCodec", "csrf_ok", "session_secret"]
