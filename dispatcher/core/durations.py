"""Durations as people write them: ``250ms``, ``1s``, ``10m``, ``10h``, ``1h30m``, ``7d``.

Every duration the product takes (configuration keys, an automation's delay, a
campaign's validity, ``metrics --since``) is read here, and bounded: a value longer
than :data:`MAX_DURATION` is refused naming the limit, never an overflow.
"""

from __future__ import annotations

import re
from datetime import timedelta

from dispatcher.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
MAX_DURATION = timedelta(days=3650)  # ten years: every duration the product takes


class DurationOutOfRange(ConfigError):
    """A well-formed duration longer than :data:`MAX_DURATION`."""


def parse_duration(text: str, *, field: str = "duration") -> timedelta:
    """``"10h"``, ``"1s"``, ``"250ms"``, ``"1h30m"`` -> ``timedelta``, at most
    :data:`MAX_DURATION` (3650d)."""
    cleaned = text.strip().replace(" ", "")
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise ConfigError(
            f"{field}: {text!r} is not a duration; write e.g. 250ms, 1s, 10m, 10h or 1h30m",
            field=field,
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)  # inf for absurdly long digits
    if not seconds <= MAX_DURATION.total_seconds():
        raise DurationOutOfRange(
            f"{field}: {text!r} is longer than {MAX_DURATION.days}d, the longest duration accepted",
            field=field,
        )
    return timedelta(seconds=seconds)
