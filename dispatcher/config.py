"""Configuration: parsed once, at the edge, into frozen objects.

Sources, later ones winning: built-in defaults, the TOML file (``--config`` or
``DISPATCHER_CONFIG``), then ``DISPATCHER_<SECTION>_<KEY>`` environment variables
(for instance ``DISPATCHER_PACING_DEFAULT_RATE=2``). ``config/dispatcher.toml``
documents every key with its default. A bad key or value fails at start with an
error that names it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta

from dispatcher.core.durations import parse_duration
from dispatcher.errors import ConfigError, InvalidInput

# Call scripts and phone numbers load only when a configuration needs them, so that a
# client command (which reads the configuration for its socket) starts quickly.
if typing.TYPE_CHECKING:
    from dispatcher.core.scripts import Script

# What each key holds. msgspec converts every value to its field's type (these aliases
# say the constraint); a duration is text read by parse_duration; a rule across keys
# (a rate above 0, a time zone that exists) is the section's own __post_init__.
Count = Annotated[int, Meta(ge=0, description="a non-negative integer")]
Rate = Annotated[float, Meta(ge=0, description="a non-negative number")]
_EXPECTED: dict[Any, str] = {
    str: "a string",
    bool: "true or false",
    timedelta: "a duration such as 250ms, 1s or 10h",
    list: "a list of strings",
    dict: "a table of number = value",
}
"""What a value of each plain type must be, as an error says it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    log_level: str = "INFO"
    drain_timeout: timedelta = timedelta(seconds=10)


@dataclass(frozen=True, slots=True, kw_only=True)
class PacingConfig:
    default_rate: Rate = 1.0
    guard: timedelta = timedelta(milliseconds=1)
    lead: timedelta = timedelta(milliseconds=50)
    max_in_flight: Count = 1000
    validity: timedelta = timedelta(hours=10)
    duplicate_window: timedelta = timedelta(seconds=1)
    rates: dict[str, Rate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rates = [("pacing.default_rate", self.default_rate)]
        rates += [(f"pacing.rates.{number}", rate) for number, rate in self.rates.items()]
        for name, rate in rates:
            if not (math.isfinite(rate) and rate > 0):
                raise ConfigError(
                    f"{name}: the rate must be a finite number above 0, not {rate}", field=name
                )
        if self.max_in_flight < 1:
            raise ConfigError(
                "pacing.max_in_flight: must be at least 1", field="pacing.max_in_flight"
            )

    def rate_of(self, number: str) -> float:
        return self.rates.get(number, self.default_rate)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    url: str = ""
    commit_window: timedelta = timedelta(milliseconds=2)
    fault_probe: timedelta = timedelta(seconds=1)  # retry a write this often after a fault
    lease: timedelta = timedelta(seconds=6)  # a worker's lease on a number (PostgreSQL)

    def __post_init__(self) -> None:
        if self.lease < timedelta(seconds=1):
            raise ConfigError(f"store.lease: must be at least 1s (a send needs part of it "
                              f"left), not {self.lease.total_seconds():g}s",
                              field="store.lease")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderConfig:
    url: str = "simulator://"
    max_retries: Count = 5
    retry_backoff: timedelta = timedelta(seconds=2)


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioConfig:
    api_base_url: str = "https://api.twilio.com"
    messaging_service_sid: str = ""
    timeout: timedelta = timedelta(seconds=10)
    poll_interval: timedelta = timedelta(seconds=30)
    fallback_poll_after: timedelta = timedelta(minutes=15)
    receipt_deadline: timedelta = timedelta(hours=72)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    seed: Count = 7
    latency: timedelta = timedelta(milliseconds=20)
    latency_jitter: timedelta = timedelta(milliseconds=10)
    receipt_delay: timedelta = timedelta(milliseconds=300)
    receipt_jitter: timedelta = timedelta(milliseconds=700)
    receipt_tick: timedelta = timedelta(milliseconds=10)
    reorder_rate: Rate = 0.1
    undelivered: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    not_in_service: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    # Calls: who answers, by recipient (exact numbers or prefixes ending in *).
    ring: timedelta = timedelta(milliseconds=300)
    machine: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    no_answer: list[str] = field(default_factory=list)
    call_failed: list[str] = field(default_factory=list)
    hangs_up: list[str] = field(default_factory=list)
    gather_input: dict[str, str] = field(default_factory=dict)
    # The carrier's record of every text it received, shared by the workers of one
    # fleet on one database (a path they all write; relative: to the home folder).
    # Empty: the worker's own log is the whole record (one service sends).
    fleet_log: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.reorder_rate <= 1:
            raise ConfigError(
                f"simulator.reorder_rate: must be between 0 and 1, not {self.reorder_rate}",
                field="simulator.reorder_rate",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceConfig:
    calls_per_second: Rate = 1.0
    max_in_flight: Count = 8
    ring_timeout: timedelta = timedelta(seconds=30)
    detect_machine: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.calls_per_second) and self.calls_per_second > 0):
            raise ConfigError(
                "voice.calls_per_second: must be a finite number above 0, "
                f"not {self.calls_per_second}",
                field="voice.calls_per_second",
            )
        if self.max_in_flight < 1:
            raise ConfigError("voice.max_in_flight: must be at least 1",
                              field="voice.max_in_flight")  # fmt: skip
        if not 5 <= self.ring_timeout.total_seconds() <= 600:
            raise ConfigError("voice.ring_timeout: must be from 5s to 600s",
                              field="voice.ring_timeout")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignsConfig:
    default_region: str = "US"
    default_time_zone: str = "America/New_York"
    send_window: str = "08:00-21:00"
    feed_ahead: Count = 2
    tick: timedelta = timedelta(milliseconds=500)

    def __post_init__(self) -> None:
        if self.default_region != "US" and not _is_region(self.default_region):
            raise ConfigError(
                f"campaigns.default_region: {self.default_region!r} is not a region code "
                "like US or GB",
                field="campaigns.default_region",
            )
        try:
            ZoneInfo(self.default_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"campaigns.default_time_zone: {self.default_time_zone!r} is not a time zone",
                field="campaigns.default_time_zone",
            ) from None
        if self.feed_ahead < 1:
            raise ConfigError("campaigns.feed_ahead: must be at least 1",
                              field="campaigns.feed_ahead")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class AutomationsConfig:
    file: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    listen: str = "127.0.0.1:8080"
    public_url: str = ""
    metrics_public: bool = False  # GET /metrics without the API token

    @property
    def base_url(self) -> str:
        """Where the app is reached from outside: public_url, else the listen address."""
        return (self.public_url or f"http://{self.listen}").rstrip("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundConfig:
    help_reply: str = (
        "Reply STOP to stop these texts, START to receive them again. Msg & data rates may apply."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlConfig:
    socket: str = "dispatcher.sock"
    max_line: Count = 65536
    max_connections: Count = 256
    idle_timeout: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ConfigError("control.max_connections: must be at least 1",
                              field="control.max_connections")  # fmt: skip
        if self.idle_timeout <= timedelta(0):
            raise ConfigError("control.idle_timeout: must be longer than 0s",
                              field="control.idle_timeout")  # fmt: skip


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailConfig:
    relay_url: str = "simulator://"  # simulator://, smtp://[user@]host[:port], smtps://...
    domain: str = "localhost"  # of each Message-ID and envelope sender (bounce+<id>@domain)
    per_second: Rate = 10.0  # emails a second per relay
    timeout: timedelta = timedelta(seconds=30)  # one SMTP command's answer
    password: str = field(default="", repr=False)  # DISPATCHER_EMAIL_PASSWORD only
    inbound_listen: str = ""  # host:port of the mailbox for bounces and complaints; off: ""
    inbound_max_size: Count = 10 * 1024 * 1024  # bytes of one message the mailbox takes
    relay_is_final: bool = False  # the relay is the recipient's own server: accepted is Delivered
    soft_bounce_limit: Count = 3  # soft bounces in a row that suppress an address
    track_opens: bool = True  # the HTML part carries the open pixel
    track_clicks: bool = True  # the links of both parts go through the click redirect

    def __post_init__(self) -> None:
        _email_inbound(self)
        if not (math.isfinite(self.per_second) and self.per_second > 0):
            raise ConfigError(
                f"email.per_second: must be a finite number above 0, not {self.per_second}",
                field="email.per_second",
            )
        if not _HOSTNAME.match(self.domain):
            raise ConfigError(f"email.domain: {self.domain!r} is not a domain name like "
                              "mail.example.com", field="email.domain")  # fmt: skip
        if self.timeout <= timedelta(0):
            raise ConfigError("email.timeout: must be longer than 0s", field="email.timeout")


def _email_inbound(email: EmailConfig) -> None:
    """The inbound mailbox's keys: a listen address, a size and a limit that make sense."""
    if email.inbound_listen:
        host, _, port = email.inbound_listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"email.inbound_listen: {email.inbound_listen!r} is not host:port "
                              "(such as 127.0.0.1:2525)", field="email.inbound_listen")  # fmt: skip
    if email.inbound_max_size < 1024:
        raise ConfigError("email.inbound_max_size: must be at least 1024 bytes, not "
                          f"{email.inbound_max_size}", field="email.inbound_max_size")  # fmt: skip
    if email.soft_bounce_limit < 1:
        raise ConfigError("email.soft_bounce_limit: must be at least 1",
                          field="email.soft_bounce_limit")  # fmt: skip


LOOPS = ("asyncio", "uvloop")
"""The event loops the service runs on (``[performance] loop``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PerformanceConfig:
    loop: str = "asyncio"  # the event loop of `dispatcher serve` and the demo

    def __post_init__(self) -> None:
        if self.loop not in LOOPS:
            raise ConfigError(
                f"performance.loop: {self.loop!r} is not an event loop; use " + " or ".join(LOOPS),
                field="performance.loop",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbacksConfig:
    """Status callbacks (docs/api.md, "Status callbacks")."""

    secret: str = field(default="", repr=False)  # DISPATCHER_CALLBACKS_SECRET only
    concurrency: Count = 8  # deliveries in flight at once
    per_receiver: Count = 2  # of which to one receiving host
    timeout: timedelta = timedelta(seconds=10)  # one POST, answer included
    first_retry: timedelta = timedelta(seconds=1)  # the longest wait after a first failure
    longest_retry: timedelta = timedelta(hours=1)  # the longest wait between two attempts
    give_up_after: timedelta = timedelta(days=1)  # after the status changed
    backlog_warning: Count = 1000  # a receiver's pending deliveries that are reported

    def __post_init__(self) -> None:
        for name in ("concurrency", "per_receiver", "backlog_warning"):
            if getattr(self, name) < 1:
                raise ConfigError(f"callbacks.{name}: must be at least 1",
                                  field=f"callbacks.{name}")  # fmt: skip
        for name in ("timeout", "first_retry", "longest_retry", "give_up_after"):
            if getattr(self, name) <= timedelta(0):
                raise ConfigError(f"callbacks.{name}: must be longer than 0s",
                                  field=f"callbacks.{name}")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    home: Path = Path("var")
    service: ServiceConfig = field(default_factory=ServiceConfig)
    pacing: PacingConfig = field(default_factory=PacingConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    provider: ProviderConfig = field(default_factory=ProviderConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    twilio: TwilioConfig = field(default_factory=TwilioConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    campaigns: CampaignsConfig = field(default_factory=CampaignsConfig)
    automations: AutomationsConfig = field(default_factory=AutomationsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    inbound: InboundConfig = field(default_factory=InboundConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    scripts: dict[str, Script] = field(default_factory=dict)  # named call scripts

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.home / 'dispatcher.db'}"

    @property
    def socket_path(self) -> Path:
        return self.home / self.control.socket

    @property
    def simulator_log(self) -> Path:
        return self.home / "simulator-sends.jsonl"

    @property
    def fleet_log(self) -> Path | None:
        """The record of texts the simulated carrier received that its lookups read, when
        several workers share one (``[simulator] fleet_log``)."""
        if not self.simulator.fleet_log:
            return None
        return self.home / self.simulator.fleet_log


_SECTIONS: dict[str, type[Any]] = {
    "service": ServiceConfig,
    "pacing": PacingConfig,
    "store": StoreConfig,
    "provider": ProviderConfig,
    "simulator": SimulatorConfig,
    "twilio": TwilioConfig,
    "voice": VoiceConfig,
    "campaigns": CampaignsConfig,
    "automations": AutomationsConfig,
    "http": HttpConfig,
    "inbound": InboundConfig,
    "control": ControlConfig,
    "performance": PerformanceConfig,
    "email": EmailConfig,
    "callbacks": CallbacksConfig,
}
_PROVIDERS = {"simulator": "simulator://", "twilio": "twilio://"}


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    home: str | Path | None = None,
) -> Config:
    """Build the configuration from defaults, ``path`` and ``env`` (see module doc)."""
    env = env if env is not None else {}
    where = str(path) if path else "configuration"
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_toml(path)
    sections: dict[str, Any] = {}
    scripts = _scripts(raw, where)
    for name, cls in _SECTIONS.items():
        table = raw.pop(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{name}] must be a table", field=name)
        if name == "email" and "password" in table:  # a secret: from the environment only
            raise ConfigError(f"{where}: email.password is read from DISPATCHER_EMAIL_PASSWORD "
                              "only, never from a file", field="email.password")  # fmt: skip
        if name == "callbacks" and "secret" in table:  # a secret: from the environment only
            raise ConfigError(f"{where}: callbacks.secret is read from "
                              "DISPATCHER_CALLBACKS_SECRET only, never from a file",
                              field="callbacks.secret")  # fmt: skip
        sections[name] = _build(cls, name, table, env, where)
    if raw:
        unknown = ", ".join(sorted(raw))
        raise ConfigError(f"{where}: unknown section or key {unknown}", field=unknown)
    if provider := env.get("DISPATCHER_PROVIDER"):
        if provider not in _PROVIDERS:
            raise ConfigError(
                f"DISPATCHER_PROVIDER: {provider!r} is not a provider; use "
                + " or ".join(_PROVIDERS),
                field="provider.url",
            )
        sections["provider"] = dataclasses.replace(sections["provider"], url=_PROVIDERS[provider])
    if region := env.get("DISPATCHER_DEFAULT_REGION"):
        try:
            sections["campaigns"] = dataclasses.replace(
                sections["campaigns"], default_region=region.strip().upper()
            )
        except ConfigError as exc:
            raise ConfigError(f"DISPATCHER_DEFAULT_REGION: {exc}", field=exc.field) from None
    if (public := env.get("DISPATCHER_PUBLIC_URL")) is not None:
        sections["http"] = dataclasses.replace(sections["http"], public_url=public)
    home_value = home or env.get("DISPATCHER_HOME") or "var"
    return Config(home=Path(home_value), scripts=scripts, **sections)


def _scripts(raw: dict[str, Any], where: str) -> dict[str, Script]:
    """The named call scripts of the file (its ``[[scripts.NAME]]`` tables), checked."""
    if "scripts" not in raw:
        return {}
    from dispatcher.core.scripts import parse_scripts  # noqa: PLC0415 - see the imports

    try:
        return parse_scripts(raw.pop("scripts"), where=where)
    except InvalidInput as exc:
        raise ConfigError(str(exc), field=exc.field) from None


def _is_region(code: str) -> bool:
    """Whether ``code`` is a region phonenumbers knows (US, the default, is)."""
    import phonenumbers  # noqa: PLC0415 - see the imports

    return code in phonenumbers.SUPPORTED_REGIONS


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: the configuration file does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    """The type of each key of a section (its field), constraints included."""
    return typing.get_type_hints(cls, include_extras=True)


def _build(
    cls: type, section: str, table: dict[str, Any], env: Mapping[str, str], where: str
) -> Any:
    kinds = _fields(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in kinds:
            raise ConfigError(
                f"{where}: unknown key {section}.{key} (known: {', '.join(sorted(kinds))})",
                field=f"{section}.{key}",
            )
        values[key] = _convert(kinds[key], value, f"{section}.{key}", where)
    prefix = f"DISPATCHER_{section.upper()}_"
    for var, text in env.items():
        if not var.startswith(prefix):
            continue
        key = var[len(prefix) :].lower()
        if key not in kinds:
            raise ConfigError(
                f"environment: {var} names no key of [{section}] "
                f"(known: {', '.join(sorted(kinds))})",
                field=f"{section}.{key}",
            )
        name = f"{section}.{key}"
        values[key] = _convert(kinds[key], _from_env(kinds[key], text, var, name), name, var)
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}", field=exc.field) from None


def _from_env(kind: Any, text: str, var: str, name: str) -> Any:
    """An environment variable's text as the value of a key of type ``kind``: a list is
    written a,b; a table k=v,k=v; a flag 1, true, yes or on."""
    origin = typing.get_origin(kind)
    if origin is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    if origin is dict:
        parts = [part for part in text.split(",") if part.strip()]
        if not all("=" in part for part in parts):
            raise ConfigError(
                f"{var}: {name} must be written number=rate,number=rate, not {text!r}",
                field=name,
            )
        pairs = (part.split("=", 1) for part in parts)
        return {k.strip(): v.strip() for k, v in pairs}
    if kind is bool:
        return text.strip().lower() in {"1", "true", "yes", "on"}
    return text


def _convert(kind: Any, value: Any, name: str, where: str) -> Any:
    """``value`` as the type ``kind`` of key ``name`` (msgspec checks it), or an error
    naming the key and ``where`` the value comes from (the file or a variable)."""
    if typing.get_origin(kind) is dict and isinstance(value, dict):  # each entry by its key
        of = typing.get_args(kind)[1]
        return {str(k): _convert(of, v, f"{name}.{k}", where) for k, v in value.items()}
    if kind is timedelta and isinstance(value, str):
        return parse_duration(value, field=name)
    try:
        return msgspec.convert(_number(kind, value), kind)
    except msgspec.ValidationError:
        raise ConfigError(f"{where}: {name} must be {_expected(kind)}, not {value!r}",
                          field=name) from None  # fmt: skip


def _number(kind: Any, value: Any) -> Any:
    """A number written as text (an environment variable, or quoted in the file) is
    read as that number."""
    if typing.get_origin(kind) is Annotated and isinstance(value, str):
        number = typing.get_args(kind)[0]
        try:
            return number(value)
        except ValueError:
            return value
    return value


def _expected(kind: Any) -> str:
    """What a value of type ``kind`` must be: its ``Meta`` says it, else its plain type."""
    if typing.get_origin(kind) is Annotated:
        meta = next(m for m in typing.get_args(kind)[1:] if isinstance(m, Meta))
        assert meta.description is not None  # every constrained key describes itself
        return meta.description
    return _EXPECTED[typing.get_origin(kind) or kind]
