"""The [email] section: defaults, the file, the environment, and the errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.config import load_config
from dispatcher.errors import ConfigError


def test_the_defaults_need_no_relay() -> None:
    email = load_config(None, env={}).email
    assert email.relay_url == "simulator://"
    assert email.per_second == 10.0
    assert email.domain == "localhost"
    assert email.password == ""
    assert (email.inbound_listen, email.relay_is_final, email.soft_bounce_limit) == ("", False, 3)
    assert email.inbound_max_size == 10 * 1024 * 1024


def test_the_environment_overrides_every_key_and_gives_the_password(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text('[email]\nrelay_url = "smtp://relay.example.com"\nper_second = 5\n')
    env = {
        "DISPATCHER_EMAIL_RELAY_URL": "smtps://ann@relay.example.com",
        "DISPATCHER_EMAIL_DOMAIN": "mail.example.com",
        "DISPATCHER_EMAIL_PER_SECOND": "2.5",
        "DISPATCHER_EMAIL_PASSWORD": "s3cret",
        "DISPATCHER_EMAIL_INBOUND_LISTEN": "127.0.0.1:2525",
        "DISPATCHER_EMAIL_INBOUND_MAX_SIZE": "65536",
        "DISPATCHER_EMAIL_RELAY_IS_FINAL": "true",
        "DISPATCHER_EMAIL_SOFT_BOUNCE_LIMIT": "5",
    }
    email = load_config(path, env=env).email
    assert email.relay_url == "smtps://ann@relay.example.com"
    assert email.domain == "mail.example.com"
    assert email.per_second == 2.5
    assert email.password == "s3cret"  # noqa: S105 - the test's secret
    assert "s3cret" not in repr(email)
    assert email.inbound_listen == "127.0.0.1:2525"
    assert (email.inbound_max_size, email.soft_bounce_limit) == (65536, 5)
    assert email.relay_is_final


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ('[email]\npassword = "x"\n', "email.password"),
        ("[email]\nper_second = 0\n", "email.per_second"),
        ('[email]\nper_second = "fast"\n', "email.per_second"),
        ('[email]\ndomain = "not a domain"\n', "email.domain"),
        ('[email]\ntimeout = "0s"\n', "email.timeout"),
        ("[email]\nrelay = 1\n", "email.relay"),
        ('[email]\ninbound_listen = "2525"\n', "email.inbound_listen"),
        ('[email]\ninbound_listen = "127.0.0.1:port"\n', "email.inbound_listen"),
        ('[email]\ninbound_listen = "127.0.0.1:70000"\n', "email.inbound_listen"),
        ("[email]\ninbound_max_size = 100\n", "email.inbound_max_size"),
        ("[email]\nsoft_bounce_limit = 0\n", "email.soft_bounce_limit"),
        ('[email]\nrelay_is_final = "maybe"\n', "email.relay_is_final"),
    ],
)
def test_a_bad_value_names_its_key(tmp_path: Path, toml: str, field: str) -> None:
    path = tmp_path / "d.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.field == field
    assert field in str(caught.value)
