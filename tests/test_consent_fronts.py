"""The consent ledger as users reach it: the ``dispatcher consent`` command (a
subprocess), the socket's ``consent_*`` commands and ``/v1/consent`` over real HTTP."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from dispatcher.config import Config
from dispatcher.control.client import ControlClient
from dispatcher.errors import InvalidInput
from tests.peers import App
from tests.test_cli import SENDER, assert_clean_error, client, service
from tests.test_cli import dispatcher as run

__all__ = ["client", "service"]  # the fixtures of the CLI's tests, used here

NUMBER = "+15550400001"
ADDRESS = "ann@example.com"


# -- the command line --------------------------------------------------------------------


async def test_consent_commands_check_add_remove_and_history(home: Path, service: Config) -> None:
    missing = await run(home, "consent", "check", NUMBER)
    assert missing.code == 1, missing.err  # not listed: 1, as grep says "no match"
    assert f"{NUMBER} may be reached by text" in missing.out
    assert (await run(home, "dnt", "check", NUMBER)).code == 1

    added = await run(home, "consent", "add", "555-040-0001", "--channel", "voice",
                      "--reason", "asked by phone", "--json")  # fmt: skip
    [entry] = added.json()["entries"]
    assert (entry["contact"], entry["channel"], entry["source"], entry["who"]) == (
        NUMBER, "voice", "operator", "operator")  # fmt: skip

    listed = await run(home, "consent", "check", NUMBER, "--channel", "voice")
    assert listed.code == 0, listed.err
    assert "opted out of voice (operator, by operator: asked by phone)" in listed.out
    text_only = await run(home, "consent", "check", NUMBER, "--channel", "text", "--json")
    assert text_only.code == 1
    assert (await run(home, "dnt", "check", NUMBER)).code == 1  # voice is not the text list

    await run(home, "dnt", "add", NUMBER, "--reason", "STOP on paper")
    assert (await run(home, "dnt", "check", NUMBER)).code == 0
    both = (await run(home, "consent", "check", NUMBER, "--json")).json()
    assert both["listed"] is True
    assert [len(both["channels"][c]) for c in ("text", "voice")] == [1, 1]

    removed = await run(home, "consent", "remove", NUMBER, "--channel", "voice", "--json")
    assert [e["action"] for e in removed.json()["entries"]] == ["opt_in"]
    again = await run(home, "consent", "remove", NUMBER, "--channel", "voice")
    assert again.code == 0
    assert "had no opt-out in force" in again.out

    history = (await run(home, "consent", "history", NUMBER, "--json")).json()["entries"]
    assert [(e["channel"], e["action"]) for e in history] == [
        ("voice", "opt_out"), ("text", "opt_out"), ("voice", "opt_in")]  # fmt: skip
    human = await run(home, "consent", "history", NUMBER)
    assert len(human.out.splitlines()) == len(history)
    listing = (await run(home, "consent", "list", "--json")).json()["entries"]
    assert [(e["contact"], e["channel"]) for e in listing] == [(NUMBER, "text")]


async def test_consent_import_reports_bad_lines_and_export_reads_back(
    home: Path, service: Config, tmp_path: Path
) -> None:
    source = tmp_path / "opt-outs.csv"
    source.write_text(
        f"contact,channel,reason\n{ADDRESS},email,bounced\nnobody,text,\n{NUMBER},,paper\n"
    )
    imported = await run(home, "consent", "import", str(source))
    assert imported.code == 1  # a line was not recorded
    assert "recorded 3 entries; 1 lines not recorded" in imported.out
    assert "opt-outs.csv:3: contact: 'nobody'" in imported.err

    exported = await run(home, "consent", "export")
    assert exported.code == 0, exported.err
    rows = list(csv.DictReader(io.StringIO(exported.out)))
    assert [(r["contact"], r["channel"], r["source"]) for r in rows] == [
        (ADDRESS, "email", "import"),
        (NUMBER, "text", "import"),
        (NUMBER, "voice", "import"),
    ]
    back = tmp_path / "back.csv"
    back.write_text(exported.out)
    assert (await run(home, "consent", "import", str(back), "--json")).json()["bad"] == []

    missing = await run(home, "consent", "import", str(tmp_path / "none.csv"))
    assert "no file" in assert_clean_error(missing, 2)
    bad = await run(home, "consent", "add", "not-a-contact")
    assert "contact" in assert_clean_error(bad, 2)


async def test_a_text_to_a_contact_opted_out_by_the_command_fails(
    home: Path, service: Config
) -> None:
    await run(home, "consent", "add", NUMBER, "--channel", "text", "--sender", SENDER)
    refused = (await run(home, "send", "--from", SENDER, "--to", NUMBER, "--body", "x",
                         "--json")).json()  # fmt: skip
    assert (refused["status"], refused["reason"]) == ("Failed", "do_not_text")
    other = (await run(home, "send", "--from", "+15550000002", "--to", NUMBER, "--body", "x",
                       "--json")).json()  # fmt: skip
    assert other["status"] == "Queued"


# -- the socket --------------------------------------------------------------------------


async def test_the_socket_commands(client: ControlClient, tmp_path: Path) -> None:
    added = await client.call("consent_add", contact="Ann@Example.com", reason="complaint",
                              who="ops")  # fmt: skip
    [entry] = added["entries"]
    assert (entry["contact"], entry["channel"], entry["who"]) == (ADDRESS, "email", "ops")
    check = await client.call("consent_check", contact=ADDRESS)
    assert check["listed"] is True
    assert [e["id"] for e in check["channels"]["email"]] == [entry["id"]]
    history = await client.call("consent_history", contact=ADDRESS)
    assert history["entries"] == [entry]
    assert (await client.call("consent_list", channel="email"))["entries"] == [entry]
    assert (await client.call("consent_list", channel="text"))["entries"] == []
    opted_in = await client.call("consent_opt_in", contact=ADDRESS, who="ann")
    assert [e["action"] for e in opted_in["entries"]] == ["opt_in"]
    removed = await client.call("consent_remove", contact=ADDRESS)
    assert removed == {"entries": [], "removed": False}

    source = tmp_path / "in.csv"
    source.write_text(f"contact\n{NUMBER}\n")
    assert await client.call("consent_import", file=str(source)) == {"recorded": 2, "bad": []}
    exported = (await client.call("consent_export"))["csv"]
    assert len(exported.splitlines()) == len(["header", "ann", "ann", NUMBER, NUMBER])
    for args, field in (
        ({"contact": "555"}, "contact"),
        ({"contact": NUMBER, "channels": ["fax"]}, "channels[0]"),
        ({"contact": NUMBER, "sender": SENDER, "campaign": "c"}, "scope"),
    ):
        refused = await _refused(client, "consent_add", args)
        assert refused["field"] == field, refused
    refused = await _refused(client, "consent_import", {"file": "relative.csv"})
    assert refused["field"] == "file"


async def _refused(client: ControlClient, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        await client.call(cmd, **args)
    except InvalidInput as exc:
        return {"field": exc.field, "message": str(exc)}
    raise AssertionError(f"{cmd} {args} was accepted")


# -- HTTP --------------------------------------------------------------------------------


async def get(app: App, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
    async with app.http.get(app.url + path, params=params, headers=app.api()) as response:
        return response.status, await response.json()


async def test_consent_over_http(app: App) -> None:
    new = {"contact": NUMBER, "channels": ["voice"], "reason": "asked on the phone"}
    status, added = await app.request("POST", "/v1/consent", json=new, headers=app.api())
    assert status == 201, added
    [entry] = added["entries"]
    assert (entry["channel"], entry["who"], entry["source"]) == ("voice", "api", "operator")

    call = {"from": SENDER, "to": NUMBER, "script": "reminder"}
    status, refused = await app.request("POST", "/v1/calls", json=call, headers=app.api())
    assert (status, refused["status"], refused["reason"]) == (201, "Failed", "do_not_call")

    status, check = await get(app, f"/v1/consent/{NUMBER}")
    assert (status, check["listed"], check["channels"]["voice"]) == (200, True, [entry])
    assert check["channels"]["text"] == []
    status, text_only = await get(app, f"/v1/consent/{NUMBER}", {"channel": "text"})
    assert (status, text_only["listed"]) == (200, False)
    assert await get(app, "/v1/consent") == (200, {"entries": [entry]})
    assert await get(app, "/v1/consent", {"channel": "email"}) == (200, {"entries": []})

    status, removed = await app.request("DELETE", f"/v1/consent/{NUMBER}?channel=voice",
                                        headers=app.api())  # fmt: skip
    assert (status, [e["action"] for e in removed["entries"]]) == (200, ["opt_in"])
    status, missing = await app.request("DELETE", f"/v1/consent/{NUMBER}", headers=app.api())
    assert (status, missing["error"]["code"]) == (404, "not_found")
    status, history = await get(app, f"/v1/consent/{NUMBER}/history")
    assert [e["action"] for e in history["entries"]] == ["opt_out", "opt_in"]

    email = {"contact": ADDRESS, "sender": "news.example.com", "reason": "unsubscribed"}
    status, scoped = await app.request("POST", "/v1/consent", json=email, headers=app.api())
    assert (status, scoped["entries"][0]["scope_value"]) == (201, "news.example.com")


async def test_consent_over_http_names_what_is_wrong(app: App) -> None:
    for body, field in [({"contact": "555"}, "contact"), ({"reason": "x"}, "contact"),
                        ({"contact": NUMBER, "channels": ["fax"]}, "channels[0]"),
                        ({"contact": ADDRESS, "channels": ["text"]}, "channel"),
                        ({"contact": NUMBER, "colour": "red"}, "colour"),
                        ({"contact": NUMBER, "reason": "x" * 501}, "reason")]:  # fmt: skip
        status, refused = await app.request("POST", "/v1/consent", json=body, headers=app.api())
        assert (status, refused["error"].get("field")) == (400, field), (body, refused)
    status, refused = await get(app, "/v1/consent/ann")
    assert (status, refused["error"]["field"]) == (400, "contact")
    status, refused = await get(app, "/v1/consent", {"limit": "0"})
    assert (status, refused["error"]["field"]) == (400, "limit")
    status, refused = await get(app, "/v1/consent", {"channel": "fax"})
    assert (status, refused["error"]["field"]) == (400, "channel")
    assert await app.service.consent_list() == []
    async with app.http.get(app.url + "/v1/consent") as response:
        assert response.status == 401
