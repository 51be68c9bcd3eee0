"""The control commands of the consent ledger: check, add, remove, list, history,
import and export (``consent_*``). The Do Not Text list's ``dnt_*`` commands are its
text view (:mod:`dispatcher.control.protocol`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from dispatcher.consent_schemas import (
    Action,
    CampaignId,
    ChannelName,
    Contact,
    Limit,
    Reason,
    Scoped,
    channels_of,
    check_out,
    entries_out,
    import_out,
)
from dispatcher.control.protocol import JSON, Args, NoArgs, command
from dispatcher.core.consent import ConsentSource, channel_of
from dispatcher.errors import InvalidInput
from dispatcher.service import Dispatcher

WHO = "operator"
"""Who an entry recorded through the socket names, unless ``who`` is given."""


def _json(model: msgspec.Struct) -> JSON:
    built: JSON = msgspec.to_builtins(model)
    return built


class ContactArgs(Args, frozen=True):
    contact: Contact
    channel: ChannelName | None = None


class ChangeArgs(Args, frozen=True):
    contact: Contact
    channels: list[ChannelName] | None = None
    sender: Scoped | None = None
    campaign: CampaignId | None = None
    reason: Reason | None = None
    who: str = WHO


class ListArgs(Args, frozen=True):
    channel: ChannelName | None = None
    limit: Limit = 1000


class ImportArgs(Args, frozen=True):
    file: str
    who: str = WHO


@command("consent_check", ContactArgs, "a contact's opt-outs in force: contact, channel")
async def _check(d: Dispatcher, a: ContactArgs) -> JSON:
    channel = channel_of(a.channel) if a.channel else None
    return _json(check_out(await d.consent_check(a.contact, channel=channel)))


async def _change(d: Dispatcher, a: ChangeArgs, action: Action) -> JSON:
    record = d.opt_out if action == "opt_out" else d.opt_in
    entries = await record(a.contact, source=ConsentSource.OPERATOR, who=a.who, reason=a.reason,
                           channels=channels_of(a.channels), sender=a.sender,
                           campaign=a.campaign)  # fmt: skip
    return _json(entries_out(entries))


@command("consent_add", ChangeArgs,
         "record an opt-out: contact, channels, sender or campaign, reason, who")  # fmt: skip
async def _add(d: Dispatcher, a: ChangeArgs) -> JSON:
    return await _change(d, a, "opt_out")


@command("consent_opt_in", ChangeArgs, "record an opt-in: contact, channels, sender or campaign")
async def _opt_in(d: Dispatcher, a: ChangeArgs) -> JSON:
    return await _change(d, a, "opt_in")


@command("consent_remove", ChangeArgs, "take back opt-outs: contact, channels, sender or campaign")
async def _remove(d: Dispatcher, a: ChangeArgs) -> JSON:
    entries = await d.consent_remove(a.contact, who=a.who, channels=channels_of(a.channels),
                                     sender=a.sender, campaign=a.campaign)  # fmt: skip
    return {**_json(entries_out(entries)), "removed": bool(entries)}


@command("consent_list", ListArgs, "the opt-outs in force: channel, limit")
async def _list(d: Dispatcher, a: ListArgs) -> JSON:
    channel = channel_of(a.channel) if a.channel else None
    return _json(entries_out(await d.consent_list(channel=channel, limit=a.limit)))


@command("consent_history", ContactArgs, "every entry of a contact, in order: contact, channel")
async def _history(d: Dispatcher, a: ContactArgs) -> JSON:
    channel = channel_of(a.channel) if a.channel else None
    return _json(entries_out(await d.consent_history(a.contact, channel=channel)))


@command("consent_import", ImportArgs, "record a CSV file's entries: file (absolute path), who")
async def _import(d: Dispatcher, a: ImportArgs) -> JSON:
    path = Path(a.file)
    if not path.is_absolute():
        raise InvalidInput("file: give the file's absolute path", field="file")
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"file: no file {a.file}", field="file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"file: {a.file} cannot be read as UTF-8 text ({exc})",
                           field="file") from None  # fmt: skip
    return _json(import_out(await d.consent_import(text, who=a.who)))


@command("consent_export", NoArgs, "the whole ledger as CSV, in the order recorded")
async def _export(d: Dispatcher, _: NoArgs) -> JSON:
    return {"csv": await d.consent_export()}
