"""Configuration: defaults, the TOML file, environment overrides and clear errors.

Every call passes ``env`` explicitly so the real environment never leaks in.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from dispatcher.config import (
    Config,
    PacingConfig,
    ProviderConfig,
    SimulatorConfig,
    load_config,
)
from dispatcher.core.durations import parse_duration
from dispatcher.errors import ConfigError, InvalidInput

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "dispatcher.toml"
NUMBER = "+14155550100"


class WriteToml:
    """Writes a TOML file under tmp_path and returns its path."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, text: str, name: str = "dispatcher.toml") -> Path:
        path = self.directory / name
        path.write_text(text, encoding="utf-8")
        return path


@pytest.fixture
def write_toml(tmp_path: Path) -> WriteToml:
    return WriteToml(tmp_path)


# --- defaults ---------------------------------------------------------------------


def test_defaults() -> None:
    config = load_config(None, env={})
    assert config == Config()
    assert config.home == Path("var")
    assert config.service.log_level == "INFO"
    assert config.service.drain_timeout == timedelta(seconds=10)
    assert config.pacing.default_rate == 1.0
    assert config.pacing.guard == timedelta(milliseconds=1)
    assert config.pacing.max_in_flight == 1000
    assert config.pacing.validity == timedelta(hours=10)
    assert config.pacing.duplicate_window == timedelta(seconds=1)
    assert config.pacing.rates == {}
    assert config.provider.url == "simulator://"
    assert config.store.url == ""
    assert config.control.socket == "dispatcher.sock"


def test_derived_paths_follow_home(tmp_path: Path) -> None:
    config = load_config(None, env={}, home=tmp_path)
    assert config.home == tmp_path
    assert config.store_url == f"sqlite:///{tmp_path / 'dispatcher.db'}"
    assert config.socket_path == tmp_path / "dispatcher.sock"
    assert config.simulator_log.parent == tmp_path


def test_home_from_environment_and_argument(tmp_path: Path) -> None:
    env = {"DISPATCHER_HOME": str(tmp_path / "from-env")}
    assert load_config(None, env=env).home == tmp_path / "from-env"
    assert load_config(None, env=env, home=tmp_path / "arg").home == tmp_path / "arg"


def test_rate_of_falls_back_to_the_default() -> None:
    pacing = PacingConfig(default_rate=2.0, rates={NUMBER: 0.5})
    assert pacing.rate_of(NUMBER) == 0.5
    assert pacing.rate_of("+14155550199") == 2.0


@pytest.mark.skipif(not REPO_CONFIG.exists(), reason="config/dispatcher.toml not written yet")
def test_the_shipped_config_file_equals_the_built_in_defaults(tmp_path: Path) -> None:
    shipped = load_config(REPO_CONFIG, env={}, home=tmp_path)
    # Every key at its default; the one example call script is the file's only addition.
    assert set(shipped.scripts) == {"reminder"}
    assert dataclasses.replace(shipped, scripts={}) == load_config(None, env={}, home=tmp_path)


# --- the TOML file ----------------------------------------------------------------


def test_file_values_are_read(write_toml: WriteToml) -> None:
    path = write_toml(
        f"""
[service]
log_level = "DEBUG"
drain_timeout = "30s"

[pacing]
default_rate = 2
max_in_flight = 8
validity = "1h30m"
duplicate_window = "500ms"
rates = {{ "{NUMBER}" = 0.5 }}

[store]
url = "sqlite:///elsewhere.db"

[simulator]
seed = 11
reorder_rate = 0.5
undelivered = ["+14155550111"]

[control]
max_line = 1024
"""
    )
    config = load_config(path, env={})
    assert config.service.log_level == "DEBUG"
    assert config.service.drain_timeout == timedelta(seconds=30)
    assert config.pacing.default_rate == 2.0
    assert isinstance(config.pacing.default_rate, float)
    assert config.pacing.max_in_flight == 8
    assert config.pacing.validity == timedelta(hours=1, minutes=30)
    assert config.pacing.duplicate_window == timedelta(milliseconds=500)
    assert config.pacing.rates == {NUMBER: 0.5}
    assert config.pacing.rate_of(NUMBER) == 0.5
    assert config.store_url == "sqlite:///elsewhere.db"
    assert config.simulator.seed == 11
    assert config.simulator.reorder_rate == 0.5
    assert config.simulator.undelivered == ["+14155550111"]
    assert config.control.max_line == 1024
    # untouched keys keep their defaults
    assert config.pacing.guard == PacingConfig().guard
    assert config.provider == ProviderConfig()


def test_an_empty_file_gives_the_defaults(write_toml: WriteToml, tmp_path: Path) -> None:
    path = write_toml("# nothing set\n")
    assert load_config(path, env={}, home=tmp_path) == load_config(None, env={}, home=tmp_path)


def test_environment_overrides_beat_the_file(write_toml: WriteToml) -> None:
    path = write_toml(
        '[pacing]\ndefault_rate = 2\nvalidity = "5h"\n[service]\nlog_level = "DEBUG"\n'
    )
    env = {
        "DISPATCHER_PACING_DEFAULT_RATE": "3.5",
        "DISPATCHER_PACING_VALIDITY": "10m",
        "DISPATCHER_PROVIDER": "twilio",
    }
    config = load_config(path, env=env)
    assert config.pacing.default_rate == 3.5
    assert config.pacing.validity == timedelta(minutes=10)
    assert config.service.log_level == "DEBUG"  # not overridden, so the file's value stays
    assert config.provider.url == "twilio://"


def test_environment_lists_and_tables() -> None:
    env = {
        "DISPATCHER_SIMULATOR_UNDELIVERED": "+14155550111, +14155550112",
        "DISPATCHER_PACING_RATES": f"{NUMBER}=0.5, +14155550101=2",
        "DISPATCHER_PACING_MAX_IN_FLIGHT": "4",
    }
    config = load_config(None, env=env)
    assert config.simulator.undelivered == ["+14155550111", "+14155550112"]
    assert config.pacing.rates == {NUMBER: 0.5, "+14155550101": 2.0}
    assert config.pacing.max_in_flight == 4


@pytest.mark.parametrize(("name", "url"), [("simulator", "simulator://"), ("twilio", "twilio://")])
def test_provider_from_environment(name: str, url: str) -> None:
    assert load_config(None, env={"DISPATCHER_PROVIDER": name}).provider.url == url


def test_unrelated_environment_variables_are_ignored() -> None:
    env = {"PATH": "/bin", "DISPATCHER_CONFIG": "/nowhere.toml", "HOME": "/root"}
    assert load_config(None, env=env) == Config()


# --- errors -----------------------------------------------------------------------


def test_an_unknown_key_in_the_file_is_named(write_toml: WriteToml) -> None:
    path = write_toml("[pacing]\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"pacing\.bogus") as info:
        load_config(path, env={})
    assert info.value.field == "pacing.bogus"
    assert str(path) in str(info.value)


def test_an_unknown_section_is_named(write_toml: WriteToml) -> None:
    path = write_toml("[pacnig]\ndefault_rate = 1\n")
    with pytest.raises(ConfigError, match="pacnig"):
        load_config(path, env={})


def test_a_section_that_is_not_a_table_is_named(write_toml: WriteToml) -> None:
    path = write_toml("pacing = 3\n")
    with pytest.raises(ConfigError, match=r"\[pacing\]"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[pacing]\ndefault_rate = "fast"\n', "pacing.default_rate"),
        ("[pacing]\ndefault_rate = true\n", "pacing.default_rate"),
        ("[pacing]\nvalidity = 10\n", "pacing.validity"),
        ('[pacing]\nvalidity = "10 parsecs"\n', "pacing.validity"),
        ("[pacing]\nmax_in_flight = 2.5\n", "pacing.max_in_flight"),
        ("[pacing]\nmax_in_flight = -1\n", "pacing.max_in_flight"),
        ("[service]\nlog_level = 3\n", "service.log_level"),
        ('[simulator]\nundelivered = "+14155550111"\n', "simulator.undelivered"),
        ("[simulator]\nseed = [1]\n", "simulator.seed"),
        ('[pacing]\nrates = { "+14155550100" = "fast" }\n', "pacing.rates.+14155550100"),
        ("[pacing]\nrates = 3\n", "pacing.rates"),
        ("[voice]\ncalls_per_second = 0\n", "voice.calls_per_second"),
        ("[voice]\nmax_in_flight = 0\n", "voice.max_in_flight"),
        ('[voice]\nring_timeout = "1s"\n', "voice.ring_timeout"),
        ('[voice]\ndetect_machine = "yes"\n', "voice.detect_machine"),
        (
            '[simulator]\ngather_input = { "+14155550100" = 1 }\n',
            "simulator.gather_input.+14155550100",
        ),
        ('[[scripts.hello]]\nsay = ""\n', "scripts.hello"),
        ("[scripts]\nhello = 3\n", "scripts.hello"),
    ],
)
def test_a_bad_type_names_the_key(write_toml: WriteToml, toml: str, key: str) -> None:
    path = write_toml(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert key in str(info.value)
    assert info.value.field == key


def test_voice_settings_from_the_file_and_the_environment(write_toml: WriteToml) -> None:
    path = write_toml('[voice]\ncalls_per_second = 2\n[simulator]\nbusy = ["+1555*"]\n'
                      'gather_input = { "+14155550100" = "12" }\n')  # fmt: skip
    config = load_config(path, env={"DISPATCHER_VOICE_RING_TIMEOUT": "45s"})
    assert config.voice.calls_per_second == 2.0
    assert config.voice.ring_timeout == timedelta(seconds=45)
    assert config.simulator.busy == ["+1555*"]
    assert config.simulator.gather_input == {"+14155550100": "12"}


def test_invalid_toml_names_the_file(write_toml: WriteToml) -> None:
    path = write_toml("[pacing\ndefault_rate = \n", name="broken.toml")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_an_unknown_environment_variable_under_a_section_prefix_is_named() -> None:
    with pytest.raises(ConfigError, match="DISPATCHER_PACING_BOGUS") as info:
        load_config(None, env={"DISPATCHER_PACING_BOGUS": "1"})
    assert info.value.field == "pacing.bogus"


def test_a_bad_environment_value_names_the_variable_and_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"DISPATCHER_PACING_DEFAULT_RATE": "fast"})
    assert "DISPATCHER_PACING_DEFAULT_RATE" in str(info.value)
    assert "pacing.default_rate" in str(info.value)


def test_a_bad_environment_duration_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"pacing\.validity"):
        load_config(None, env={"DISPATCHER_PACING_VALIDITY": "10 parsecs"})


def test_a_malformed_environment_rate_table_names_the_variable() -> None:
    # "number=rate" pairs are expected; a pair without "=" must be a ConfigError naming the
    # variable, not a bare unpacking ValueError.
    with pytest.raises(ConfigError, match="DISPATCHER_PACING_RATES"):
        load_config(None, env={"DISPATCHER_PACING_RATES": NUMBER})


def test_a_number_written_as_text_in_the_file_is_read(write_toml: WriteToml) -> None:
    path = write_toml(f'[pacing]\ndefault_rate = "2"\nmax_in_flight = " 4 "\n'
                      f'rates = {{ "{NUMBER}" = "0.5" }}\n')  # fmt: skip
    pacing = load_config(path, env={}).pacing
    assert (pacing.default_rate, pacing.max_in_flight, pacing.rates) == (2.0, 4, {NUMBER: 0.5})


def test_a_bad_file_value_fails_even_when_the_environment_overrides_it(
    write_toml: WriteToml,
) -> None:
    path = write_toml('[pacing]\ndefault_rate = "fast"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"DISPATCHER_PACING_DEFAULT_RATE": "2"})
    assert str(info.value).startswith(f"{path}: pacing.default_rate must be a non-negative")
    assert info.value.field == "pacing.default_rate"


def test_an_unknown_provider_fails() -> None:
    with pytest.raises(ConfigError, match="bogus") as info:
        load_config(None, env={"DISPATCHER_PROVIDER": "bogus"})
    assert "DISPATCHER_PROVIDER" in str(info.value)
    assert info.value.field == "provider.url"


def test_a_config_error_is_an_invalid_input_and_a_value_error() -> None:
    with pytest.raises(ValueError, match="DISPATCHER_PROVIDER"):
        load_config(None, env={"DISPATCHER_PROVIDER": "bogus"})
    assert issubclass(ConfigError, InvalidInput)


# --- rates ------------------------------------------------------------------------


def test_a_default_rate_of_zero_fails_in_the_file(write_toml: WriteToml) -> None:
    path = write_toml("[pacing]\ndefault_rate = 0\n")
    with pytest.raises(ConfigError, match=r"pacing\.default_rate.*above 0"):
        load_config(path, env={})


def test_a_default_rate_of_zero_fails_in_the_environment() -> None:
    with pytest.raises(ConfigError, match=r"pacing\.default_rate"):
        load_config(None, env={"DISPATCHER_PACING_DEFAULT_RATE": "0"})


def test_a_per_number_rate_of_zero_fails(write_toml: WriteToml) -> None:
    path = write_toml(f'[pacing]\nrates = {{ "{NUMBER}" = 0 }}\n')
    with pytest.raises(ConfigError, match=r"\+14155550100.*above 0"):
        load_config(path, env={})


def test_a_negative_rate_fails() -> None:
    with pytest.raises(ConfigError, match=r"pacing\.default_rate"):
        load_config(None, env={"DISPATCHER_PACING_DEFAULT_RATE": "-1"})


@pytest.mark.parametrize("source", ["file", "env"])
def test_a_rate_that_is_not_a_number_fails(write_toml: WriteToml, source: str) -> None:
    # NaN compares false with everything, so "rate <= 0" lets it through.
    if source == "file":
        path: Path | None = write_toml("[pacing]\ndefault_rate = nan\n")
        env: dict[str, str] = {}
    else:
        path, env = None, {"DISPATCHER_PACING_DEFAULT_RATE": "nan"}
    with pytest.raises(ConfigError, match=r"pacing\.default_rate"):
        load_config(path, env=env)


def test_max_in_flight_must_be_at_least_one() -> None:
    with pytest.raises(ConfigError, match=r"pacing\.max_in_flight"):
        load_config(None, env={"DISPATCHER_PACING_MAX_IN_FLIGHT": "0"})


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_reorder_rate_must_be_a_probability(rate: float) -> None:
    with pytest.raises(ConfigError, match=r"simulator\.reorder_rate"):
        SimulatorConfig(reorder_rate=rate)


# --- durations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("1s", timedelta(seconds=1)),
        ("10m", timedelta(minutes=10)),
        ("10h", timedelta(hours=10)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        (" 5s ", timedelta(seconds=5)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["10 parsecs", "", "   ", "h", "10", "ms", "1x", "-1s", "1h30", "s1", ".5s", "1,5s"]
)
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ConfigError, match="not a duration") as info:
        parse_duration(text, field="pacing.validity")
    assert "pacing.validity" in str(info.value)
    assert info.value.field == "pacing.validity"


@pytest.mark.parametrize("text", ["99999999999h", "9" * 400 + "d", "3651d", "3650d1ms"])
def test_parse_duration_refuses_durations_over_the_limit_naming_it(text: str) -> None:
    with pytest.raises(ConfigError, match="3650d") as info:
        parse_duration(text, field="delay")
    assert info.value.field == "delay"
    assert "delay" in str(info.value)


def test_parse_duration_takes_the_limit_itself() -> None:
    assert parse_duration("3650d") == timedelta(days=3650)


def test_the_control_socket_limits_from_the_file_and_the_environment(
    write_toml: WriteToml,
) -> None:
    assert Config().control.max_connections == 256
    assert Config().control.idle_timeout == timedelta(minutes=5)
    path = write_toml('[control]\nmax_connections = 40\nidle_timeout = "30s"\n')
    config = load_config(path, env={})
    assert config.control.max_connections == 40
    assert config.control.idle_timeout == timedelta(seconds=30)
    env = {"DISPATCHER_CONTROL_MAX_CONNECTIONS": "500", "DISPATCHER_CONTROL_IDLE_TIMEOUT": "1m"}
    config = load_config(path, env=env)
    assert config.control.max_connections == 500
    assert config.control.idle_timeout == timedelta(minutes=1)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"DISPATCHER_CONTROL_MAX_CONNECTIONS": "0"}, "control.max_connections"),
        ({"DISPATCHER_CONTROL_MAX_CONNECTIONS": "lots"}, "control.max_connections"),
        ({"DISPATCHER_CONTROL_IDLE_TIMEOUT": "0s"}, "control.idle_timeout"),
    ],
)
def test_bad_control_socket_limits_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    assert info.value.field == key
    assert key in str(info.value)


def test_the_lease_on_a_number_is_read_and_a_short_one_refused(write_toml: WriteToml) -> None:
    assert Config().store.lease == timedelta(seconds=6)
    config = load_config(write_toml('[store]\nlease = "3s"\n'), env={})
    assert config.store.lease == timedelta(seconds=3)
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"DISPATCHER_STORE_LEASE": "500ms"})
    assert info.value.field == "store.lease"
    assert "store.lease: must be at least 1s" in str(info.value)
    assert "not 0.5s" in str(info.value)
