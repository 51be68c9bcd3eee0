"""Campaigns over real HTTP: the list, one campaign, pause, resume and cancel."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dispatcher.core.campaigns import CampaignState, ContactState
from dispatcher.service import CampaignSpec
from dispatcher.web import campaign_contacts
from dispatcher.web import campaigns as web_campaigns
from tests.helpers import wait_for
from tests.peers import App
from tests.test_campaign_cli import open_zone, shut_zone


async def get(app: App, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
    async with app.http.get(app.url + path, params=params, headers=app.api()) as response:
        return response.status, await response.json()


async def post(app: App, path: str) -> tuple[int, Any]:
    async with app.http.post(app.url + path, headers=app.api()) as response:
        return response.status, await response.json()


async def draft(app: App, home: Path, name: str) -> str:
    """A draft campaign of two contacts that would start in a year, its import done."""
    contacts = home / f"{name}.csv"
    contacts.write_text("phone,name\n+12125550001,Ann\n+12125550002,Bob\n")
    spec = CampaignSpec(name=name, contacts=contacts, template="Hi {name}",
                        senders=["+15550000001"], draft=True,
                        start_at=datetime.now(UTC) + timedelta(days=365))  # fmt: skip
    campaign = await app.service.create_campaign(spec)

    async def imported() -> bool:
        return (await app.service.campaign(campaign.id)).campaign.state is CampaignState.DRAFT

    await wait_for(imported, what="the import")
    return campaign.id


async def test_campaigns_are_listed_shown_and_moved(app: App, home: Path) -> None:
    first = await draft(app, home, "spring")
    second = await draft(app, home, "autumn")
    status, listed = await get(app, "/v1/campaigns")
    assert status == 200
    assert [c["id"] for c in listed["campaigns"]] == [second, first]
    status, shown = await get(app, f"/v1/campaigns/{first}")
    assert status == 200
    assert shown == listed["campaigns"][1]
    assert {k: shown[k] for k in ("name", "state", "channel", "template", "from", "accepted",
                                  "total", "done")} == {
        "name": "spring", "state": "draft", "channel": "text", "template": "Hi {name}",
        "from": ["+15550000001"], "accepted": 2, "total": 2, "done": 0}  # fmt: skip
    assert shown["contacts"] == {"pending": 2}
    assert shown["import"]["done"] is True
    _, one = await get(app, "/v1/campaigns", {"limit": "1"})
    assert [c["id"] for c in one["campaigns"]] == [second]

    path = f"/v1/campaigns/{first}"
    status, refused = await post(app, f"{path}/pause")  # a draft is not running
    assert (status, refused["error"]["code"]) == (409, "conflict")
    for verb, state in [("resume", "running"), ("pause", "paused"), ("resume", "running"),
                        ("cancel", "canceled")]:  # fmt: skip
        status, moved = await post(app, f"{path}/{verb}")
        assert (status, moved["state"]) == (200, state), verb
        assert (await app.service.campaign(first)).campaign.state.value == state

    async def contacts_cancelled() -> bool:
        contacts: dict[str, int] = (await get(app, path))[1]["contacts"]
        return contacts == {"canceled": 2}

    await wait_for(contacts_cancelled, what="its contacts cancelled")
    status, refused = await post(app, f"{path}/resume")
    assert (status, refused["error"]["code"]) == (409, "conflict")


async def test_unknown_campaigns_and_bad_limits(app: App) -> None:
    for status, refused in [await get(app, "/v1/campaigns/cmp_nope"),
                            await post(app, "/v1/campaigns/cmp_nope/cancel")]:  # fmt: skip
        assert (status, refused["error"]["code"]) == (404, "not_found")
    status, refused = await get(app, "/v1/campaigns", {"limit": "0"})
    assert (status, refused["error"]["field"]) == (400, "limit")
    assert await get(app, "/v1/campaigns") == (200, {"campaigns": []})
    async with app.http.get(app.url + "/v1/campaigns") as response:
        assert response.status == 401


CSV = b"phone,name\n+12125550001,Ann\n+12125550002,Bob\n"


async def upload(app: App, params: dict[str, str], body: bytes = CSV,
                 content_type: str = "text/csv") -> tuple[int, Any]:  # fmt: skip
    headers = {**app.api(), "Content-Type": content_type}
    async with app.http.post(app.url + "/v1/campaigns", params=params, data=body,
                             headers=headers) as response:  # fmt: skip
        return response.status, await response.json()


SPRING = {"name": "spring", "template": "Hi {name}", "from": "+15550000001", "draft": "true",
          "start_at": "2999-01-01T09:00:00Z"}  # fmt: skip


async def test_a_campaign_is_created_from_an_uploaded_file(app: App, home: Path) -> None:
    status, created = await upload(app, SPRING)
    assert status == 201
    assert (created["name"], created["template"], created["from"]) == (
        "spring", "Hi {name}", ["+15550000001"])  # fmt: skip
    assert created["start_at"] == "2999-01-01T09:00:00+00:00"

    async def imported() -> bool:
        shown: dict[str, Any] = (await get(app, f"/v1/campaigns/{created['id']}"))[1]
        return bool(shown["state"] == "draft" and shown["total"] == 2)

    await wait_for(imported, what="the import")
    assert [p.read_bytes() for p in (home / "uploads").iterdir()] == [CSV]


async def test_a_refused_upload_keeps_nothing(
    app: App, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, refused = await upload(app, SPRING, b"number,name\n+12125550001,Ann\n")
    assert (status, refused["error"]["code"]) == (400, "invalid_input")  # no phone column
    status, refused = await upload(app, {**SPRING, "from": "ann"})
    assert status == 400
    status, refused = await upload(app, {k: v for k, v in SPRING.items() if k != "name"})
    assert (status, refused["error"]["field"]) == (400, "name")
    status, refused = await upload(app, SPRING, content_type="application/xml")
    assert (status, refused["error"]["code"]) == (415, "unsupported_media_type")
    status, refused = await upload(app, SPRING, content_type="application/json")
    assert status == 400
    assert "with a JSON body the campaign's settings are in the body" in refused["error"]["message"]
    monkeypatch.setattr(web_campaigns, "MAX_UPLOAD", 100)
    status, refused = await upload(app, SPRING, CSV * 10)
    assert (status, refused["error"]["code"]) == (413, "too_large")
    assert list((home / "uploads").iterdir()) == []
    assert await get(app, "/v1/campaigns") == (200, {"campaigns": []})


async def test_a_campaign_says_how_many_contacts_are_held_and_until_when(
    app: App, home: Path
) -> None:
    zone = shut_zone()
    contacts = home / "night.csv"
    contacts.write_text(f"phone,name,tz\n+12125550001,Ann,{zone}\n")
    spec = CampaignSpec(name="night", contacts=contacts, template="Hi {name}",
                        senders=["+15550000001"], tz_column="tz")  # fmt: skip
    campaign_id = (await app.service.create_campaign(spec)).id

    async def held() -> bool:
        return bool((await get(app, f"/v1/campaigns/{campaign_id}"))[1]["held"] == 1)

    await wait_for(held, within=30, what="the contact to be seen held")
    _, shown = await get(app, f"/v1/campaigns/{campaign_id}")
    opens = datetime.fromisoformat(shown["held_until"])
    assert opens > datetime.now(UTC)
    assert opens.astimezone(ZoneInfo(zone)).strftime("%H:%M") == "08:00"
    _, listed = await get(app, "/v1/campaigns")
    assert listed["campaigns"][0]["held_until"] == shown["held_until"]
    _, drafted = await get(app, f"/v1/campaigns/{await draft(app, home, 'spring')}")
    assert (drafted["held"], drafted["held_until"]) == (0, None)


async def test_a_campaign_s_contacts_are_listed_a_page_at_a_time(app: App, home: Path) -> None:
    contacts = home / "seven.csv"
    rows = [f"+1212555000{n},Name {n}" for n in range(1, 8)]
    contacts.write_text("phone,name\n" + "\n".join(rows) + "\n")
    spec = CampaignSpec(name="seven", contacts=contacts, template="Hi {name}",
                        senders=["+15550000001"], draft=True)  # fmt: skip
    campaign_id = (await app.service.create_campaign(spec)).id

    async def imported() -> bool:
        return bool((await get(app, f"/v1/campaigns/{campaign_id}"))[1]["total"] == 7)

    await wait_for(imported, what="the import")
    path = f"/v1/campaigns/{campaign_id}/contacts"
    lines: list[int] = []
    params = {"limit": "3"}
    while True:
        status, page = await get(app, path, params)
        assert status == 200
        assert len(page["contacts"]) <= 3
        lines += [c["line"] for c in page["contacts"]]
        if page["next_cursor"] is None:
            break
        params = {"limit": "3", "cursor": page["next_cursor"]}
    assert lines == [2, 3, 4, 5, 6, 7, 8]
    status, first = await get(app, path, {"state": "pending", "limit": "1"})
    assert status == 200
    assert {k: first["contacts"][0][k] for k in ("line", "phone", "from", "state", "attempt",
                                                 "id", "status", "sent_at")} == {
        "line": 2, "phone": "+12125550001", "from": "+15550000001", "state": "pending",
        "attempt": 0, "id": None, "status": None, "sent_at": None}  # fmt: skip
    assert await get(app, path, {"state": "sent"}) == (200, {"contacts": [],
                                                             "next_cursor": None})  # fmt: skip
    _, every = await get(app, path)
    assert (len(every["contacts"]), every["next_cursor"]) == (7, None)
    for params, field in [({"cursor": "nonsense"}, "cursor"), ({"state": "asleep"}, "state"),
                          ({"limit": "501"}, "limit")]:  # fmt: skip
        status, refused = await get(app, path, params)
        assert (status, refused["error"]["field"]) == (400, field), params
    status, refused = await get(app, "/v1/campaigns/cmp_nope/contacts")
    assert (status, refused["error"]["code"]) == (404, "not_found")


async def post_json(app: App, body: Any, params: dict[str, str] | None = None) -> tuple[int, Any]:
    data = io.BytesIO(json.dumps(body).encode())  # streamed: a large body too
    headers = {**app.api(), "Content-Type": "application/json"}
    async with app.http.post(app.url + "/v1/campaigns", data=data, params=params,
                             headers=headers) as response:  # fmt: skip
        return response.status, await response.json()


AUTUMN: dict[str, Any] = {
    "name": "autumn", "template": "Hi {First Name|there}", "from": "+15550000001",
    "draft": True, "start_at": "2999-01-01T09:00:00Z",
}  # fmt: skip


async def test_a_campaign_is_created_from_json_contacts(app: App, home: Path) -> None:
    listed = {"number": "+12125550009", "reason": "asked"}
    assert (await app.request("POST", "/v1/dnt", json=listed, headers=app.api()))[0] == 201
    contacts = [
        {"phone": "+12125550001", "fields": {"First Name": "Ann"}, "time_zone": "Asia/Tokyo"},
        {"phone": "(212) 555-0002"},  # national, read in the default region; no field
        {"phone": "+1 212 555 0001", "fields": {"First Name": "Again"}},  # a duplicate
        {"phone": "+12125550009", "fields": {"First Name": "Listed"}},  # Do Not Text
    ]  # fmt: skip
    status, created = await post_json(app, {**AUTUMN, "contacts": contacts})
    assert status == 201, created
    assert (created["name"], created["template"], created["from"], created["start_at"]) == (
        "autumn", "Hi {First Name|there}", ["+15550000001"], "2999-01-01T09:00:00+00:00",
    )  # fmt: skip

    async def imported() -> bool:
        shown: dict[str, Any] = (await get(app, f"/v1/campaigns/{created['id']}"))[1]
        return bool(shown["state"] == "draft")

    await wait_for(imported, what="the import")
    _, shown = await get(app, f"/v1/campaigns/{created['id']}")
    assert {k: shown[k] for k in ("accepted", "rejected", "duplicates", "suppressed")} == {
        "accepted": 2, "rejected": 0, "duplicates": 1, "suppressed": 1}  # fmt: skip
    _, page = await get(app, f"/v1/campaigns/{created['id']}/contacts")
    assert [(c["line"], c["phone"]) for c in page["contacts"]] == [
        (2, "+12125550001"), (3, "+12125550002")]  # fmt: skip
    texts = await app.service.campaign_preview(created["id"])
    assert [t.body for t in texts] == ["Hi Ann", "Hi there"]
    stored = await app.service.campaign_contacts(created["id"], list(ContactState), 10)
    assert [c.tz for c in stored] == ["Asia/Tokyo", "America/New_York"]  # its number's
    (written,) = (home / "uploads").iterdir()
    assert written.read_text().splitlines()[0] == '"phone","time_zone","First Name"'


SALE: dict[str, Any] = {
    "name": "sale", "channel": "email", "from": "Acme Shop <shop@example.com>",
    "subject": "{{ First_Name }}, the sale is on", "template": "Hi {{ First_Name }}.",
}  # fmt: skip


async def test_an_email_campaign_from_json_contacts_is_the_one_a_file_makes(
    app: App, home: Path
) -> None:
    opted = {"contact": "gone@example.com", "channels": ["email"], "reason": "asked"}
    assert (await app.request("POST", "/v1/consent", json=opted, headers=app.api()))[0] == 201
    zone = open_zone()
    contacts: list[dict[str, Any]] = [
        {"email": "ann@example.com", "fields": {"First Name": "Ann"}, "time_zone": zone},
        {"email": "Bob@Example.com", "fields": {"First Name": "Bob"}},
        {"email": "ANN@example.com", "fields": {"First Name": "Again"}},  # a duplicate
        {"email": "gone@example.com", "fields": {"First Name": "Gone"}},  # suppressed
    ]  # fmt: skip
    rows = [f'"{c["email"]}","{c.get("time_zone", "")}","{c["fields"]["First Name"]}"'
            for c in contacts]  # fmt: skip
    file = "\n".join(['"email","time_zone","First Name"', *rows, ""]).encode()
    status, from_file = await upload(app, {**SALE, "tz_column": "time_zone", "draft": "true",
                                           "time_zone": zone}, file)  # fmt: skip
    assert status == 201, from_file
    status, from_json = await post_json(app, {**SALE, "draft": True, "time_zone": zone,
                                              "contacts": contacts})  # fmt: skip
    assert status == 201, from_json
    assert (from_json["channel"], from_json["subject"]) == ("email", SALE["subject"])

    async def imported() -> bool:
        shown = [(await get(app, f"/v1/campaigns/{c['id']}"))[1] for c in (from_file, from_json)]
        return all(c["state"] == "draft" for c in shown)

    await wait_for(imported, what="the imports")
    made = [(await get(app, f"/v1/campaigns/{c['id']}"))[1] for c in (from_file, from_json)]
    counts = [{k: c[k] for k in ("accepted", "rejected", "duplicates", "suppressed")}
              for c in made]  # fmt: skip
    assert counts == [{"accepted": 2, "rejected": 0, "duplicates": 1, "suppressed": 1}] * 2
    pages = [(await get(app, f"/v1/campaigns/{c['id']}/contacts"))[1] for c in made]
    assert [[(c["line"], c["phone"]) for c in page["contacts"]] for page in pages] == [
        [(2, "ann@example.com"), (3, "Bob@example.com")]] * 2  # fmt: skip
    previews = [await app.service.campaign_preview(c["id"]) for c in made]
    assert [[(t.subject, t.body) for t in texts] for texts in previews] == [
        [("Ann, the sale is on", "Hi Ann."), ("Bob, the sale is on", "Hi Bob.")]] * 2  # fmt: skip
    # the JSON contacts written as a contacts file: the very file uploaded
    assert [p.read_bytes() for p in (home / "uploads").iterdir()] == [file] * 2

    assert (await post(app, f"/v1/campaigns/{from_json['id']}/resume"))[0] == 200

    async def sent() -> bool:
        page = (await get(app, f"/v1/campaigns/{from_json['id']}/contacts"))[1]
        return all(c["state"] == "sent" and c["status"] == "Sent" for c in page["contacts"])

    await wait_for(sent, what="the campaign's emails")
    page = (await get(app, f"/v1/campaigns/{from_json['id']}/contacts"))[1]
    emails = [(await get(app, f"/v1/emails/{c['id']}"))[1] for c in page["contacts"]]
    assert [(e["to"], e["subject"], e["priority"]) for e in emails] == [
        ("ann@example.com", "Ann, the sale is on", "bulk"),
        ("Bob@example.com", "Bob, the sale is on", "bulk")]  # fmt: skip
    stored = [await app.service.store.get_email(c["id"]) for c in page["contacts"]]
    assert [e.campaign_id if e else None for e in stored] == [from_json["id"]] * 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"contacts": [{"phone": "+12125550001"}, {"phone": "not a number"}]}, "contacts[1].phone"),
        ({"contacts": [{"phone": "+12125550001", "time_zone": "Mars/Olympus"}]},
         "contacts[0].time_zone"),
        ({"contacts": [{"phone": "+12125550001", "fields": {"PHONE": "x"}}]},
         "contacts[0].fields.PHONE"),
        ({"contacts": [{"phone": "+12125550001", "fields": {"note": "a\nb"}}]},
         "contacts[0].fields.note"),
        ({"contacts": [{"phone": "+12125550001"}, {"fields": {}}]}, "contacts[1].phone"),
        ({"contacts": [{"phone": "+12125550001", "fields": {"n": 7}}]}, "contacts[0].fields"),
        ({"contacts": [{"phone": "+12125550001", "email": "a@example.com"}]}, "contacts[0].email"),
        ({"contacts": [{"email": "a@example.com"}]}, "contacts[0].phone"),
        ({**SALE, "contacts": [{"email": "a@example.com"}, {"fields": {"x": "y"}}]},
         "contacts[1].email"),
        ({**SALE, "contacts": [{"email": "a@example.com"}, {"email": "not an address"}]},
         "contacts[1].email"),
        ({**SALE, "contacts": [{"email": "a@example.com"}, {"email": "a@b.com\nBcc: c@d.com"}]},
         "contacts[1].email"),
        ({**SALE, "contacts": [{"email": "a@example.com", "phone": "+12125550001"}]},
         "contacts[0].phone"),
        ({**SALE, "contacts": [{"email": "a@example.com", "fields": {"Email": "x"}}]},
         "contacts[0].fields.Email"),
        ({**SALE, "email_column": "mail", "contacts": [{"email": "a@example.com"}]},
         "email_column"),
        ({"contacts": []}, "contacts"),
        ({"contacts": [{"phone": "+12125550001"}] * 100_001}, "contacts"),
        ({"phone_column": "mobile"}, "phone_column"),
        ({"name": ""}, "name"),
        ({"template": "Hi {name}"}, "template"),  # no contact has the field
    ],
)  # fmt: skip
async def test_a_bad_json_campaign_is_refused_naming_the_contact(
    app: App, home: Path, change: dict[str, Any], field: str
) -> None:
    body = {**AUTUMN, "contacts": [{"phone": "+12125550001"}], **change}
    status, refused = await post_json(app, body)
    assert (status, refused["error"]["field"]) == (400, field), refused
    assert not (home / "uploads").exists() or list((home / "uploads").iterdir()) == []
    assert await get(app, "/v1/campaigns") == (200, {"campaigns": []})


async def test_a_json_campaign_takes_no_query_and_a_bounded_body(
    app: App, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {**AUTUMN, "contacts": [{"phone": "+12125550001"}]}
    status, refused = await post_json(app, body, params={"name": "spring"})
    assert (status, refused["error"]["field"]) == (400, "name")
    monkeypatch.setattr(campaign_contacts, "MAX_JSON", 100)
    status, refused = await post_json(app, body)
    assert (status, refused["error"]["code"]) == (413, "too_large")
    assert "over 100 bytes" in refused["error"]["message"]
    status, refused = await upload(app, SPRING, b"name,phone\n", content_type="text/html")
    assert (status, refused["error"]["code"]) == (415, "unsupported_media_type")
    assert "application/json" in refused["error"]["message"]
    assert await get(app, "/v1/campaigns") == (200, {"campaigns": []})


async def test_an_email_campaign_s_text_part_is_as_long_as_an_email_s(app: App, home: Path) -> None:
    text = "Hi {{ First_Name }}. " + "x" * 3000  # over a text's template, under an email's
    contacts = [{"email": "ann@example.com", "fields": {"First Name": "Ann"}}]
    status, created = await post_json(app, {**SALE, "template": text, "draft": True,
                                            "contacts": contacts})  # fmt: skip
    assert (status, created["template"]) == (201, text), created
    status, refused = await post_json(app, {**AUTUMN, "template": "x" * 2001,
                                            "contacts": [{"phone": "+12125550001"}]})  # fmt: skip
    assert (status, refused["error"]["field"]) == (400, "template")
    assert "at most 2,000 characters in a text campaign, not 2,001" in refused["error"]["message"]
    assert len(list((home / "uploads").iterdir())) == 1  # the refused one's is not kept


@pytest.mark.parametrize("source", ["json", "csv"])
async def test_an_email_campaign_s_text_part_is_named_as_its_template(
    app: App, home: Path, source: str
) -> None:
    sale = {**SALE, "template": "Hi {{ Last_Name }}."}  # no contact gives it
    if source == "json":
        contacts = [{"email": "ann@example.com", "fields": {"First Name": "Ann"}}]
        status, refused = await post_json(app, {**sale, "contacts": contacts})
    else:
        status, refused = await upload(app, sale, b"email,First Name\nann@example.com,Ann\n")
    assert (status, refused["error"]["field"]) == (400, "template"), refused
    assert refused["error"]["message"].startswith("template: line 1: the field 'Last_Name'")
    assert list((home / "uploads").iterdir()) == []
