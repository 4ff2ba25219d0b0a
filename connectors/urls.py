"""URLs in settings and messages: check them once at load time, never show their secrets.

``check_url`` refuses what cannot be a URL of the expected kind (``http://``, ``http://[::1/erp``,
``not a url``) with the reason; ``redact_url`` keeps a URL readable (scheme, user, host, port, path)
but masks the password of the userinfo and query parameters that carry secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy.engine import URL

MASK = "***"
#: query parameters whose value is a secret (libpq's ``password``, tokens, keys), compared lower-case;
#: ``is_secret_parameter`` also takes every name that contains one of ``SECRET_WORDS``
SECRET_PARAMETERS = frozenset({"password", "passwd", "pwd", "secret", "token", "access_token", "api_key", "apikey"})
#: a parameter whose name contains one of these is a secret: ``sslpassword`` (libpq's client key
#: passphrase), ``client_secret``, ``refresh_token``, ``db_passwd``, ``apikey`` ...
SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "apikey", "credential", "signature")
#: a parameter one of whose ``_``/``-``/``.``-separated parts is one of these: ``key``, ``api_key``,
#: ``access-key``, ``sig`` (a signed URL's signature), ``auth``, ``pass``
SECRET_PARTS = frozenset({"key", "sig", "auth", "pass", "pw", "sas"})


def is_secret_parameter(name: str) -> bool:
    """Whether a URL query parameter called ``name`` carries a secret (compared case-insensitively).

    Errs on masking: a parameter that only names a file holding a secret (``sslkey``) reads ``***`` too.
    """
    lowered = name.lower()
    if lowered in SECRET_PARAMETERS or any(word in lowered for word in SECRET_WORDS):
        return True
    return any(part in SECRET_PARTS for part in re.split(r"[^a-z0-9]+", lowered))


def check_url(url: str, *, schemes: Iterable[str], require_host: bool = True) -> str:
    """``url`` unchanged if it parses, has one of ``schemes`` and (by default) a host; else ValueError."""
    allowed = tuple(schemes)
    if not url or url != url.strip() or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("not a URL (empty, or contains blanks or control characters)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check (a non-number raises)
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in allowed:
        raise ValueError(f"must start with {' or '.join(s + '://' for s in allowed)}")
    if require_host and not parts.hostname:
        raise ValueError("has no host")
    return url


def redact_url(url: str) -> str:
    """``url`` with the userinfo's password and secret query parameters replaced by ``***``.

    A string that does not parse as a URL with a scheme is masked whole: it may be a secret put
    in the wrong place.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a URL whose port does not parse is masked whole
    except ValueError:
        return MASK
    if not parts.scheme or "://" not in url:
        return MASK
    redacted = url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        redacted = redacted.replace(f"//{parts.netloc}", f"//{user}:{MASK}@{hostport}", 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(is_secret_parameter(key) for key, _ in pairs):
            masked = [(k, MASK if is_secret_parameter(k) else v) for k, v in pairs]
            redacted = redacted.replace(f"?{parts.query}", f"?{urlencode(masked, safe='*')}", 1)
    return redacted


def redact_database_url(url: URL) -> str:
    """A SQLAlchemy ``URL`` as text for logs and messages, every secret masked as by ``redact_url``.

    ``URL.render_as_string(hide_password=True)`` hides only the userinfo's password, not libpq's
    ``sslpassword=`` or ``password=`` in the query.
    """
    return redact_url(url.render_as_string(hide_password=False))


__all__ = ["MASK", "SECRET_PARAMETERS", "check_url", "is_secret_parameter", "redact_database_url", "redact_url"]
