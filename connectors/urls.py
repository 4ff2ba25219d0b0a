"""URLs in settings and messages: check them once at load time, never show their secrets.

``check_url`` refuses what cannot be a URL of the expected kind (``http://``, ``http://[::1/erp``,
``not a url``) with the reason; ``redact_url`` keeps a URL readable (scheme, user, host, port, path)
but masks the password of the userinfo and query parameters that carry secrets.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "***"
#: query parameters whose value is a secret (libpq's ``password``, tokens, keys), compared lower-case
SECRET_PARAMETERS = frozenset({"password", "passwd", "pwd", "secret", "token", "access_token", "api_key", "apikey"})


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
        if any(key.lower() in SECRET_PARAMETERS for key, _ in pairs):
            masked = [(k, MASK if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs]
            redacted = redacted.replace(f"?{parts.query}", f"?{urlencode(masked, safe='*')}", 1)
    return redacted


__all__ = ["MASK", "SECRET_PARAMETERS", "check_url", "redact_url"]
