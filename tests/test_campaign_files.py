"""Contacts files as marketers have them: columns separated by semicolons or tabs, a
byte order mark, quoted fields, headers with spaces and capitals; templates that name
those columns as written and give defaults for empty values."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.core.campaigns import CsvReader, Field, parse_template, sniff_delimiter
from dispatcher.errors import InvalidInput
from tests.campaign_helpers import ny, running

# -- templates ---------------------------------------------------------------------------


def test_a_field_names_a_column_as_its_header_writes_it() -> None:
    template = parse_template("Hi {First Name}, see you on { Appointment Date }.")
    assert template.fields == ("First Name", "Appointment Date")
    values = {"First Name": "Ann", "Appointment Date": "May 4"}
    assert template.render(values) == "Hi Ann, see you on May 4."


def test_a_default_fills_an_empty_value_wherever_the_column_is_used() -> None:
    template = parse_template("Hi {first_name|there}! {{{first_name}}} {city|}")
    assert template.fields == ("first_name", "city")
    assert Field("first_name", "there") in template.parts
    assert template.render({"first_name": "  ", "city": ""}) == "Hi there! {there} "
    assert template.render({"first_name": "Ann", "city": "Rome"}) == "Hi Ann! {Ann} Rome"
    assert template.empty({"first_name": "", "city": ""}) == []
    assert parse_template("Hi {name}").empty({"name": " "}) == ["name"]


def test_a_default_may_hold_any_text_but_a_brace() -> None:
    template = parse_template("Hi {name|dear customer, friend}!")
    assert template.render({"name": ""}) == "Hi dear customer, friend!"
    with pytest.raises(InvalidInput, match="not closed"):
        parse_template("Hi {name|{x}}")


# -- reading the file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "delimiter"),
    [
        ("phone,name", ","),
        ("phone;First Name;City", ";"),
        ("phone\tname", "\t"),
        ("phone|name", "|"),
        ('"Name; with semicolon",phone', ","),
        ("phone", ","),
        ("phone;name,x;y", ";"),
    ],
)
def test_the_delimiter_is_the_one_the_header_has_most_of(first: str, delimiter: str) -> None:
    assert sniff_delimiter(first) == delimiter


def test_a_semicolon_file_with_a_byte_order_mark_and_quotes_is_read(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(
        b"\xef\xbb\xbfPhone;First Name;Note\r\n"
        b'+12125550001;Ann;"one; two"\r\n'
        b'"(212) 555-0002";"B\xc3\xa9a";"said ""hi"""\r\n'
    )
    reader = CsvReader(path)
    rows = list(reader.rows())
    assert reader.delimiter == ";"
    assert reader.header == ["Phone", "First Name", "Note"]
    assert [r.values for r in rows] == [
        {"Phone": "+12125550001", "First Name": "Ann", "Note": "one; two"},
        {"Phone": "(212) 555-0002", "First Name": "Béa", "Note": 'said "hi"'},
    ]


def test_a_utf16_file_is_refused_saying_how_to_save_it(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes("phone,name\n+12125550001,Ann\n".encode("utf-16"))
    with pytest.raises(InvalidInput, match="UTF-16 text; save it as UTF-8") as refused:
        list(CsvReader(path).rows())
    assert refused.value.field == "contacts"


# -- importing ----------------------------------------------------------------------------


async def test_a_spreadsheet_export_is_imported_with_its_own_headers(tmp_path: Path) -> None:
    """A ``;`` file with a byte order mark, a ``Phone`` column (matched to the default
    ``--phone-column phone``), a template naming ``{First Name}`` and a default."""
    path = tmp_path / "export.csv"
    rows = [f"{ny(1)};Ann;May 4", f"{ny(2)};;May 5", "(212) 555-0003;Cy;"]
    path.write_bytes(("\ufeffPhone;First Name;Appointment Date\n" + "\n".join(rows)).encode())
    async with running(tmp_path) as h:
        campaign = await h.create(
            path, template="Hi {First Name|there}, see you on {Appointment Date}.", draft=True
        )
        stored = await h.desk.get(campaign.id)
        contacts = await h.contacts(campaign.id)
        await h.desk.resume(campaign.id)
        await h.until_sent(2)
        bodies = {m.recipient: m.body for s in h.sends() if (m := await h.message(s.item_id))}

    assert (stored.accepted, stored.rejected) == (2, 1)  # Cy has no appointment date
    assert [c.phone for c in contacts] == [ny(1), ny(2)]
    assert bodies == {ny(1): "Hi Ann, see you on May 4.", ny(2): "Hi there, see you on May 5."}


async def test_a_missing_column_says_which_header_is_close(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        path = h.contacts_file([(ny(1), "Ann")], header=("phone", "First Name"))
        with pytest.raises(InvalidInput, match=r"\{first name\} is written \{First Name\}"):
            await h.create(path, template="Hi {first name}")
        assert await h.service.store.list_campaigns(10) == []


async def test_a_header_read_as_one_column_blames_the_delimiter(tmp_path: Path) -> None:
    """Every line quoted whole (a file saved twice): the header is one column that holds
    semicolons, and the message says the delimiter is the problem, not the column."""
    path = tmp_path / "contacts.csv"
    path.write_text('"phone;name"\n"+12125550001;Ann"\n', encoding="utf-8")
    async with running(tmp_path) as h:
        with pytest.raises(InvalidInput, match="separated by semicolons") as refused:
            await h.create(path)
    assert refused.value.field == "phone_column"
