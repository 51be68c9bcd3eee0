"""``dispatcher demo``: the whole thing working, on SQLite and the simulator.

On SQLite it makes a fresh database in its own home; when ``store.url``
(``DISPATCHER_STORE_URL``) names a PostgreSQL database, it runs on that one instead,
which must hold no texts yet (an empty database of its own: the demo's checks count
everything in it).

It starts the service in-process on a fresh home (with its control socket, so an
operator can question it from another terminal, and its HTTP app on a free
loopback port), sends a small campaign from a few numbers (same-second
duplicates, a Do Not Text contact, undeliverable, unreachable and out-of-service
recipients among it), and has an automation place appointment-reminder calls
through the HTTP API (a human who confirms, an answering machine that gets the
voicemail drop, a busy line, no answer, a contact who hangs up). It sends a few
emails with per-contact fields to the in-process relay (the default ``simulator://``:
no mail server): one is taken, one bounces (an address at the reserved domain
``bounce.example``), one is unsubscribed from with one click, and an automation tells
the front desk of the unsubscribe by email. It shows live progress and ends with
every message's, call's and email's final status and the measured minimum gap
between sends of each number and between calls, read from the simulator's own logs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import secrets
import socket
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from dispatcher import private, runtime
from dispatcher.cli import report_page
from dispatcher.compose import serving
from dispatcher.config import AutomationsConfig, Config, HttpConfig, SimulatorConfig, StoreConfig
from dispatcher.core.calls import CALL_TERMINAL, Call, CallStatus
from dispatcher.core.campaigns import Campaign, CampaignState, ContactState
from dispatcher.core.emails import Email, EmailStatus
from dispatcher.core.metrics import Metrics, MetricsQuery
from dispatcher.core.model import TERMINAL, Lane, Message, TextStatus
from dispatcher.core.scripts import parse_scripts
from dispatcher.errors import ConfigError
from dispatcher.service import (
    CallView,
    CampaignSpec,
    Dispatcher,
    EmailRequest,
    EmailView,
    StatusView,
    TextRequest,
    UnsubscribeScope,
    UnsubscribeSource,
)

DNT_CONTACT = "+15550166666"
UNDELIVERED = "+1555019*"
UNREACHABLE = "+1555018*"
NOT_IN_SERVICE = "+1555017*"


REMINDER = [
    {"voicemail_drop": "Hi, this is Acme Dental with a reminder of your appointment "
                       "tomorrow at 10. Call us back at 555 0100."},
    {"say": "Hi, this is Acme Dental reminding you of your appointment tomorrow at 10."},
    {"gather": "Press 1 to confirm, or 2 to talk to the front desk.", "digits": 1,
     "on": {"1": "confirmed", "2": "desk"}},
    {"say": "We did not get an answer. We will text you the details.", "goto": "details"},
    {"label": "confirmed", "say": "Thank you, your appointment is confirmed."},
    {"label": "details", "activity": "text", "goto": "end",
     "body": "Acme Dental: your appointment is tomorrow at 10:00. Reply STOP to opt out."},
    {"label": "desk", "notify": ["+15550009001", "+15550009002"]},
]  # fmt: skip
"""The demo's call script: a voicemail for machines; for people a reminder, a prompt
that branches, and a text with the details (an activity) for those who confirm."""

CALLS = [
    ("+15550200004", "placed through the API: no answer"),
    ("+15550200005", "placed through the API: hangs up during the reminder"),
]
CALLER = "+15550000100"
CONTACTS = Path(__file__).resolve().parents[2] / "examples" / "contacts.csv"
CAMPAIGN = "Appointment reminders"
POOL = ("+15550000201", "+15550000202")
TEMPLATE = ("Hi {first_name}, this is Acme Dental: your appointment is on {appointment}. "
            "Reply STOP to opt out.")  # fmt: skip
AUTOMATIONS = f"""
[[automation]]
name = "call-when-delivered"
on = "text.delivered"
when = {{ campaign = "{CAMPAIGN}" }}
do = "call"
script = "reminder"

[[automation]]
name = "text-after-voicemail"
on = "call.machine"
do = "text"
body = "We left you a voicemail about your appointment. Reply STOP to opt out."

[[automation]]
name = "tell-the-desk"
on = "email.unsubscribe"
do = "email"
from = "robot@acme-dental.example.com"
to = "desk@acme-dental.example.com"
subject = "{{{{ contact }}}} unsubscribed"
text = "{{{{ contact }}}} unsubscribed from {{{{ sender }}}} (email {{{{ source_id }}}})."
"""
POSTGRESQL = ("postgresql://", "postgres://")
"""The store URLs the demo runs on as given; any other, it replaces by a fresh SQLite."""
EMAIL_FROM = "Acme Dental <appointments@acme-dental.example.com>"
EMAILS = [
    ("ann@example.com", "Ann", "taken by the relay"),
    ("bob@bounce.example", "Bob", "bounces (hard, 5.1.1): the address is suppressed"),
    ("cy@example.com", "Cy", "unsubscribed with one click: an automation tells the desk"),
]
BOUNCES = "bob@bounce.example"
REPORT_WAIT = timedelta(seconds=10)  # the relay's report comes a second after it took it
UNSUBSCRIBES = "cy@example.com"
EMAIL_SUBJECT = "Your appointment tomorrow, {{ first_name }}"
EMAIL_TEXT = "Hi {{ first_name }}, your appointment at Acme Dental is tomorrow at 10:00."
EMAIL_HTML = "<p>Hi {{ first_name }},</p><p>your appointment is tomorrow at <b>10:00</b>.</p>"
CONTACT_NOTES = {
    "+15550300001": "delivered; the call: presses 1, confirmed, gets a text",
    "+15550300003": "delivered; the call: an answering machine, voicemail, then a text",
    "+15550300005": "delivered; the call: line busy",
    "+15550166666": "on the Do Not Text list: suppressed",
    "+15550300009": "outside its send window (its time zone): held",
    "+15550190014": "the carrier will not deliver: no call",
    "+15550180015": "handset unreachable: no call",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Planned:
    request: TextRequest
    note: str


def plan(numbers: int, texts: int) -> list[Planned]:
    """The demo campaign: mostly bulk, some automation, and every kind of trouble."""
    planned: list[Planned] = []
    for n in range(numbers):
        sender = f"+1555000{n + 1:04d}"
        for t in range(texts):
            recipient, note = f"+1555010{n:02d}{t:02d}", "bulk"
            lane = Lane.BULK
            if t == 3:
                recipient, note = f"+1555010{n:02d}02", "same contact, same second"
            elif t == 5 and n == 0:
                recipient, note = DNT_CONTACT, "on the Do Not Text list"
            elif t == 6:
                recipient, note = f"+1555019{n:02d}06", "carrier will not deliver"
            elif t == 7:
                recipient, note = f"+1555018{n:02d}07", "handset unreachable"
            elif t == 8 and n == 1 % max(numbers, 1):
                recipient, note = f"+1555017{n:02d}08", "number not in service"
            elif t >= texts - 2:
                lane, note = Lane.AUTOMATION, "automation (jumps the bulk queue)"
            body = f"Hello from dispatcher, text {t + 1} of {texts} from {sender}."
            planned.append(
                Planned(TextRequest(sender=sender, recipient=recipient, body=body, lane=lane), note)
            )
    return planned


def demo_config(base: Config, home: Path) -> Config:
    simulator = dataclasses.replace(
        base.simulator if base.simulator != SimulatorConfig() else SimulatorConfig(),
        undelivered=[UNDELIVERED],
        unreachable=[UNREACHABLE],
        not_in_service=[NOT_IN_SERVICE],
        reorder_rate=0.2,
        machine=["+15550300003"],
        busy=["+15550300005"],
        no_answer=["+15550200004"],
        hangs_up=["+15550200005"],
        gather_input={"+15550300001": "1"},
    )
    rules = home / "automations.toml"
    private.prepare_home(home)
    private.write_text(rules, AUTOMATIONS)
    # A fresh SQLite database in the demo's home, unless the store is a PostgreSQL one.
    store = base.store if base.store.url.startswith(POSTGRESQL) else StoreConfig()
    return dataclasses.replace(
        base, home=home, simulator=simulator, store=store,
        scripts=parse_scripts({"reminder": REMINDER}, where="demo"),
        http=HttpConfig(listen=f"127.0.0.1:{_free_port()}"),
        # The contacts' time zone when their number has none (the demo's 555 numbers).
        campaigns=dataclasses.replace(base.campaigns, default_time_zone="UTC"),
        automations=AutomationsConfig(file=str(rules)),
    )  # fmt: skip


def demo_window(now: datetime) -> str:
    """A send window open now in UTC (the demo contacts' zone) for six hours, so the demo
    runs at any hour; the contact 14 hours ahead (Pacific/Kiritimati) is outside it."""
    start = (now - timedelta(hours=1)).astimezone(UTC)
    end = (now + timedelta(hours=6)).astimezone(UTC)
    return f"{start:%H:%M}-{end:%H:%M}"


def run_demo(base: Config, *, numbers: int = 3, texts: int = 12) -> int:
    stamp = datetime.now().astimezone().strftime("%Y%m%d-%H%M%S")
    private.folder(base.home)  # the demo's own home is a new folder in it
    home = base.home / f"demo-{stamp}"
    config = demo_config(base, home)
    console = Console()
    store = "PostgreSQL" if config.store.url else "SQLite"
    console.print(f"[bold]dispatcher demo[/] - home {home} ({store} + simulator)")
    console.print(f"While it runs, ask it questions: dispatcher --home {home} status", style="dim")
    return runtime.run(
        _demo(config, console, max(1, numbers), max(4, texts)), loop=config.performance.loop
    )


async def _demo(config: Config, console: Console, numbers: int, texts: int) -> int:
    planned = plan(numbers, texts)
    token = secrets.token_urlsafe(16)
    async with serving(config, api_token=token, twilio_auth_token=None) as dispatcher:
        if sum((await dispatcher.status()).counts.values()):
            raise ConfigError(
                "store.url: the demo needs a PostgreSQL database of its own, and this one "
                "already holds texts: create an empty one (createdb dispatcher_demo) and "
                "name it in DISPATCHER_STORE_URL",
                field="store.url",
            )
        await dispatcher.dnt_add(DNT_CONTACT, added_by="contact", reason="replied STOP")
        notes: dict[str, str] = {}
        for item in planned:
            submission = await dispatcher.submit(item.request)
            notes[submission.message.id] = item.note
        email_notes = await _emails(dispatcher)
        campaign = await _campaign(dispatcher, console)
        call_notes = await _automation_calls(config.http.base_url, token)
        total = len(planned) + len(call_notes) + campaign.accepted
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            while True:
                view = await dispatcher.status()
                live.update(_progress(view, total))
                if (_settled(view) and await _emails_settled(dispatcher, email_notes)
                        and await _campaign_settled(dispatcher, campaign.id)):  # fmt: skip
                    break
                await asyncio.sleep(0.25)
        emails = [await dispatcher.email(email_id) for email_id in email_notes]
        messages = [(await dispatcher.message(mid)).message for mid in notes]
        calls = [await dispatcher.call(c.id) for c in await _all_calls(dispatcher)]
        call_notes.update(await _call_notes(dispatcher, calls))
        contacts = await _campaign_table(dispatcher, campaign.id)
        totals = await dispatcher.metrics()
        page = config.home / "report.html"
        private.write_text(
            page, report_page.render(await dispatcher.report_data(MetricsQuery(), None))
        )
    console.print(_final_table(messages, notes))
    console.print(_counts_table(messages))
    console.print(contacts)
    console.print(_calls_table(calls, call_notes))
    console.print(_emails_table(emails, email_notes))
    gaps = _gaps(config.simulator_log)
    call_gaps = _gaps(config.simulator_log.with_name("simulator-calls.jsonl"))
    console.print(_gaps_table(gaps))
    smallest_call_gap = min((g for _, g in call_gaps.values() if g is not None), default=None)
    if smallest_call_gap is not None:
        console.print(f"Calls placed: minimum gap {smallest_call_gap:.6f} s "
                      f"({config.voice.calls_per_second:g} call/s per account)")  # fmt: skip
    ok = all(g is None or g >= 1.0 for _, g in gaps.values())
    ok = ok and (
        smallest_call_gap is None or smallest_call_gap >= 1 / config.voice.calls_per_second
    )
    verdict = (
        "[green]every number kept at least 1.000 s between sends[/]"
        if ok
        else "[red]spacing violated[/]"
    )
    console.print(verdict)
    console.print(f"Simulator log: {config.simulator_log}", style="dim")
    sample = next(iter(notes))
    same_store = " and the same DISPATCHER_STORE_URL" if config.store.url else ""
    console.print(
        f"Ask why a text is in its state: dispatcher --home {config.home} message {sample} "
        f"(with dispatcher serve running on that home{same_store})",
        style="dim",
    )
    console.print(_metrics_table(totals))
    console.print(f"The engagement report (open it in a browser): [bold]{page.resolve()}[/]")
    return 0 if ok else 1


async def _emails(dispatcher: Dispatcher) -> dict[str, str]:
    """A few emails with per-contact fields, bulk (so they carry List-Unsubscribe)."""
    notes: dict[str, str] = {}
    for to, name, note in EMAILS:
        submitted = await dispatcher.submit_email(EmailRequest(
            sender=EMAIL_FROM, recipient=to, subject=EMAIL_SUBJECT, text=EMAIL_TEXT,
            html=EMAIL_HTML, lane=Lane.BULK, fields={"first_name": name},
        ))  # fmt: skip
        notes[submitted.email.id] = note
    return notes


async def _emails_settled(dispatcher: Dispatcher, notes: dict[str, str]) -> bool:
    """Every email has left, the bounce has come back, and the contact who unsubscribes
    has (once, as a reader's one click would), and the desk's email has left too."""
    settled = True
    for email_id in list(notes):
        view = await dispatcher.email(email_id)
        email = view.email
        if email.status in (EmailStatus.QUEUED, EmailStatus.SENDING):
            settled = False
        elif email.recipient == BOUNCES and _report_due(dispatcher, email):
            settled = False  # its report comes a second after the relay took it
        elif email.recipient == UNSUBSCRIBES and not any(e.result for e in view.history):
            await dispatcher.unsubscribe(email_id, UnsubscribeScope.SENDER,
                                         UnsubscribeSource.ONE_CLICK)  # fmt: skip
            settled = False
    for run in await dispatcher.automation_runs(100):
        if run.rule == "tell-the-desk" and run.engagement_id and run.engagement_id not in notes:
            notes[run.engagement_id] = "automation: the desk is told of the unsubscribe"
            settled = False
    return settled


def _report_due(dispatcher: Dispatcher, email: Email) -> bool:
    """Is the bounce of ``email`` still to come? (Waited for 10 s at most.)"""
    if email.status is EmailStatus.BOUNCED or email.sent_at is None:
        return False  # it came, or the email never left
    return dispatcher.clock.now().wall - email.sent_at < REPORT_WAIT


def _emails_table(views: list[EmailView], notes: dict[str, str]) -> Table:
    table = Table(title="Emails (to the in-process relay, simulator://)")
    for column in ("to", "status", "results", "what it shows"):
        table.add_column(column, no_wrap=column in ("to", "status"))
    for view in views:
        e = view.email
        style = {EmailStatus.SENT: "green", EmailStatus.BOUNCED: "red"}.get(e.status, "yellow")
        code = f" {e.provider_code}" if e.status is EmailStatus.BOUNCED else ""
        results = ", ".join(f"{ev.result.value}" for ev in view.history if ev.result)
        table.add_row(e.recipient, f"[{style}]{e.status.value}[/]{code}", results or "-",
                      notes.get(e.id, ""))  # fmt: skip
    return table


async def _campaign(dispatcher: Dispatcher, console: Console) -> Campaign:
    """The campaign from examples/contacts.csv, imported and running."""
    now = dispatcher.clock.now().wall
    window = demo_window(now)
    created = await dispatcher.create_campaign(CampaignSpec(
        name=CAMPAIGN, contacts=CONTACTS, template=TEMPLATE, senders=POOL,
        send_window=window, tz_column="tz",
    ))  # fmt: skip
    while (view := await dispatcher.campaign(created.id)).campaign.state is (  # noqa: ASYNC110 - as an operator would: by asking
        CampaignState.IMPORTING
    ):
        await asyncio.sleep(0.05)
    c = view.campaign
    console.print(
        f"Campaign [bold]{c.name}[/] from {CONTACTS.name}: {c.accepted} contacts accepted, "
        f"{c.rejected} rejected (see {c.reject_file}), {c.duplicates} duplicate, "
        f"{c.suppressed} on the Do Not Text list; {c.segments} segments; window {window} "
        "in each contact's time"
    )
    return c


async def _campaign_settled(dispatcher: Dispatcher, campaign_id: str) -> bool:
    """Every contact sent or held (outside its window), and every automation run."""
    view = await dispatcher.campaign(campaign_id)
    queued = view.contacts.get(ContactState.QUEUED, 0)
    due_by = dispatcher.clock.now().wall + timedelta(days=1)
    due = await dispatcher.automation_runs(1, due_by=due_by)
    return view.campaign.state is not CampaignState.IMPORTING and not queued and not due


async def _all_calls(dispatcher: Dispatcher) -> list[Call]:
    return await dispatcher.calls_in(list(CallStatus), 1000)


async def _call_notes(dispatcher: Dispatcher, calls: list[CallView]) -> dict[str, str]:
    notes: dict[str, str] = {}
    for view in calls:
        if view.call.trigger and view.call.trigger.startswith("automation:"):
            notes[view.call.id] = "automation: the campaign's text was delivered"
    return notes


async def _campaign_table(dispatcher: Dispatcher, campaign_id: str) -> Table:
    view = await dispatcher.campaign(campaign_id)
    table = Table(title=f"Campaign {view.campaign.name}: contacts")
    for column in ("line", "contact", "from", "state", "text status", "what it shows"):
        table.add_column(column)
    states = [ContactState.SENT, ContactState.PENDING, ContactState.QUEUED,
              ContactState.EXPIRED, ContactState.CANCELED]  # fmt: skip
    for contact in await dispatcher.campaign_contacts(campaign_id, states, 1000):
        status = "-"
        if contact.message_id:
            status = (await dispatcher.message(contact.message_id)).message.status.value
        note = CONTACT_NOTES.get(contact.phone, "delivered; the call: answers" if status ==
                                 "Delivered" else "")  # fmt: skip
        table.add_row(str(contact.line), contact.phone, contact.sender, contact.state.value,
                      status, note)  # fmt: skip
    return table


def _metrics_table(totals: Metrics) -> Table:
    table = Table(title="Engagement metrics (dispatcher metrics)")
    table.add_column("channel")
    table.add_column("result")
    table.add_column("count", justify="right")
    for channel, counts in (("text", totals.text), ("voice", totals.voice),
                            ("email", totals.email)):  # fmt: skip
        for name, count in counts.items():
            if count:
                table.add_row(channel, name, str(count))
    for name, rate in totals.rates.items():
        table.add_row("", name.replace("_", " "), "-" if rate is None else f"{rate:.0%}")
    return table


async def _automation_calls(base_url: str, token: str) -> dict[str, str]:
    """An automation asks for reminder calls through the HTTP API, as any would."""
    notes: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for to, note in CALLS:
            body = {"from": CALLER, "to": to, "script": "reminder"}
            key = {"Idempotency-Key": f"reminder-{to}"}
            async with http.post(f"{base_url}/v1/calls", json=body, headers=key) as response:
                answer = await response.json()
                if response.status not in (200, 201):
                    raise RuntimeError(f"the automation API refused a call: {answer}")
            notes[str(answer["id"])] = note
    return notes


def _settled(view: StatusView) -> bool:
    waiting = sum(n for s, n in view.counts.items() if s not in TERMINAL)
    calls = view.calls
    calls_waiting = calls is not None and any(
        n for s, n in calls.counts.items() if s not in CALL_TERMINAL
    )
    return waiting == 0 and not calls_waiting and sum(view.counts.values()) > 0


def _progress(view: StatusView, total: int) -> Group:
    done = sum(n for s, n in view.counts.items() if s in TERMINAL)
    counts = Table(title=f"{done}/{total} settled", show_edge=False)
    for status in sorted(view.counts):
        counts.add_column(status.value, justify="right")
    counts.add_row(*(str(view.counts[s]) for s in sorted(view.counts)))
    queues = Table(show_edge=False)
    for column in ("number", "queued", "in flight", "next slot"):
        queues.add_column(column)
    for n in view.numbers:
        slot = n.next_slot_at.strftime("%H:%M:%S.%f")[:-3] if n.next_slot_at else "-"
        queues.add_row(n.number, str(n.depth), str(n.in_flight), slot)
    return Group(counts, queues)


def _final_table(messages: list[Message], notes: dict[str, str]) -> Table:
    table = Table(title="Final status of every text, in send order per number")
    for column in ("from", "to", "status", "reason", "what it shows"):
        table.add_column(column, no_wrap=column != "what it shows")
    order = sorted(messages, key=lambda m: (m.sender, m.send_started_at or m.accepted_at))
    for m in order:
        style = {TextStatus.DELIVERED: "green", TextStatus.UNSENT: "yellow"}.get(m.status, "red")
        table.add_row(
            m.sender, m.recipient, f"[{style}]{m.status.value}[/]", m.reason or "",
            notes.get(m.id, ""),
        )  # fmt: skip
    return table


def _calls_table(views: list[CallView], notes: dict[str, str]) -> Table:
    table = Table(title="Calls (script: reminder), placed by automations")
    for column in ("to", "status", "answered by", "steps it ran", "what it shows"):
        table.add_column(column, no_wrap=column in ("to", "status"))
    for view in views:
        c = view.call
        style = "green" if c.status is CallStatus.COMPLETED else "yellow"
        steps = [
            f"{e.result.value} {e.detail}" if e.result and e.detail and e.result.value == "Prompt"
            else e.result.value
            for e in view.history if e.result
        ]  # fmt: skip
        table.add_row(
            c.recipient, f"[{style}]{c.status.value}[/]", c.answered_by or "-",
            ", ".join(steps) or "-", notes.get(c.id, ""),
        )  # fmt: skip
    return table


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _counts_table(messages: list[Message]) -> Table:
    table = Table(title="Counts by status")
    table.add_column("status")
    table.add_column("texts", justify="right")
    for status, count in sorted(Counter(m.status for m in messages).items()):
        table.add_row(status.value, str(count))
    return table


def _gaps(log_path: Path) -> dict[str, tuple[int, float | None]]:
    """Per sending number: sends in the simulator's log and the smallest gap (s), on
    the simulator's monotonic clock (the wall clock may be stepped by time sync)."""
    times: dict[str, list[float]] = defaultdict(list)
    with log_path.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            times[record["from"]].append(float(record["mono"]))
    result: dict[str, tuple[int, float | None]] = {}
    for number, stamps in sorted(times.items()):
        stamps.sort()
        smallest = min((b - a for a, b in itertools.pairwise(stamps)), default=None)
        result[number] = (len(stamps), smallest)
    return result


def _gaps_table(gaps: dict[str, tuple[int, float | None]]) -> Table:
    table = Table(title="Pacing, from the simulator's log")
    table.add_column("sending number")
    table.add_column("sends", justify="right")
    table.add_column("minimum gap (s)", justify="right")
    for number, (sends, gap) in gaps.items():
        table.add_row(number, str(sends), f"{gap:.6f}" if gap is not None else "-")
    return table
