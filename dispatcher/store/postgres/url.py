"""``postgresql://`` URLs: checked before anything connects, shown without a password."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from dispatcher.errors import ConfigError

SCHEMES = ("postgresql", "postgres")
PARAMETERS = frozenset({
    "host", "port", "dbname", "database", "user", "password", "passfile", "service",
    "sslmode", "sslcert", "sslkey", "sslrootcert", "sslnegotiation", "sslcrl", "sslpassword",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "target_session_attrs",
    "krbsrvname", "gsslib", "application_name",
})  # fmt: skip
"""The query parameters the driver (asyncpg) takes; any other it would send to the
server as a setting, and a typo would surface as the server's refusal at connect."""
CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "target_session_attrs": ("any", "primary", "standby", "prefer-standby", "read-write",
                             "read-only"),
}  # fmt: skip
"""The parameters that take one of a few values (the driver's own message lists none)."""


@dataclass(frozen=True, slots=True)
class PostgresURL:
    dsn: str  # as written: what the driver connects with
    shown: str  # for messages and logs: the password replaced by ***


def parse_url(url: str, *, key: str = "store.url") -> PostgresURL:
    """Check ``url`` (``postgresql://user:password@host:port/database?param=value``, or
    the Unix socket form ``postgresql://user@/database?host=/run/postgresql``); raises
    :class:`ConfigError` naming ``key`` and what is wrong."""
    example = "write postgresql://user:password@host:5432/database"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{key}: {_hide(url)!r} is not a valid URL ({exc}); {example}",
                          field=key) from exc  # fmt: skip
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"{key}: {_hide(url)!r} is not a PostgreSQL URL; {example}", field=key)
    if port == 0:
        raise ConfigError(f"{key}: port 0 in {_hide(url)!r}; {example}", field=key)
    if parts.fragment:
        raise ConfigError(f"{key}: a PostgreSQL URL has no #fragment: {_hide(url)!r}", field=key)
    if "/" in parts.path.lstrip("/"):
        raise ConfigError(
            f"{key}: the database name in {_hide(url)!r} has a '/'; {example}", field=key
        )
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigError(f"{key}: the parameters of {_hide(url)!r} are malformed ({exc})",
                          field=key) from exc  # fmt: skip
    for name, value in query:
        if name not in PARAMETERS:
            known = ", ".join(sorted(PARAMETERS))
            raise ConfigError(f"{key}: unknown parameter {name!r} in {_hide(url)!r}; known: "
                              f"{known}", field=key)  # fmt: skip
        if (choices := CHOICES.get(name)) is not None and value not in choices:
            raise ConfigError(f"{key}: {name} {value!r} in {_hide(url)!r} is not one of "
                              f"{', '.join(choices)}", field=key)  # fmt: skip
        if name == "port" and not all(p.isdigit() for p in value.split(",")):
            raise ConfigError(f"{key}: port {value!r} in {_hide(url)!r} is not a number",
                              field=key)  # fmt: skip
    return PostgresURL(dsn=url, shown=_hide(url))


def _hide(url: str) -> str:
    """``url`` with its password (in the address or in a parameter) replaced by ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostport}"
        query = "&".join(
            f"{name}=***" if name in ("password", "sslpassword") else f"{name}={value}"
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        )
        if netloc == parts.netloc and query == parts.query:
            return url  # nothing hidden: as written (urlunsplit drops an empty host's //)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "(a URL that cannot be parsed)"
