"""The PostgreSQL store beyond the contract suite, on a throwaway cluster (``postgres``):
what several writers on one database and a reopened store must get right."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
import pytest

from dispatcher.core.callbacks import Subscription
from dispatcher.core.calls import CallEvent, CallStatus, VoiceResult, call_status
from dispatcher.core.campaigns import (
    Campaign,
    CampaignChannel,
    CampaignState,
    Contact,
    ContactState,
    OutsideWindow,
)
from dispatcher.core.channel import Channel
from dispatcher.core.consent import Action
from dispatcher.core.emails import EmailStatus, email_status
from dispatcher.core.metrics import EMAIL, TEXT, VOICE, MetricsQuery, compute
from dispatcher.core.model import DntEntry, Source, TextStatus, transition
from dispatcher.core.results import Cursor, Run
from dispatcher.errors import StoreError, StoreUnavailable
from dispatcher.store import Store
from dispatcher.store.memory import MemoryStore
from dispatcher.store.postgres.base import rolled_back
from dispatcher.store.postgres.history import place
from dispatcher.store.postgres.store import PostgresStore
from dispatcher.testing import wait_for
from tests.peers_postgres import Cluster
from tests.test_email_metrics import EMAIL_CASES, write_email_history
from tests.test_store_contract import (
    ACCOUNT,
    ENGAGEMENT_CASES,
    RELAY,
    at,
    counts,
    first_call_events,
    first_email_events,
    insert_call,
    insert_email,
    make_call,
    make_email,
    make_message,
    move_call,
    write_history,
)

T0 = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


@pytest.fixture
async def url(postgres: Cluster) -> str:
    return await postgres.fresh_database()


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(url) as opened:
        yield opened


# -- campaigns, runs and callbacks (part D) ------------------------------------------------


async def queue_text(db: asyncpg.Connection, message_id: str) -> None:
    """A text in ``messages``, written as a worker would (the results join it)."""
    await db.execute(
        "INSERT INTO messages (id, sender, recipient, body, segments, lane, status, accepted,"
        " accepted_at, expires_at, updated_at) VALUES ($1, '+14155550100', '+14155550123',"
        " 'hi', 1, 1, 'Sent', true, now(), now() + interval '1 hour', now())",
        message_id,
    )


async def deliver(db: asyncpg.Connection, message_id: str) -> int:
    """A Delivered event of a text; its id."""
    event_id: int = await db.fetchval(
        "INSERT INTO events (message_id, at, status, source, applied)"
        " VALUES ($1, now(), 'Delivered', 'provider', true) RETURNING id",
        message_id,
    )
    return event_id


async def test_a_result_committed_late_with_a_smaller_id_is_not_skipped(
    store: PostgresStore, url: str
) -> None:
    """Two writers: the first takes event id n and commits after the second (n + 1). A
    cursor moved past n + 1 while n was in flight would never see n: the tip stops
    before the older transaction's events until it ends, and then both are read."""
    early, late = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        for message_id in ("m_early", "m_late"):
            await queue_text(early, message_id)
        subs = [Subscription(channel=Channel.TEXT, source_id=m, url="https://example.com/h",
                             created_at=T0) for m in ("m_early", "m_late")]  # fmt: skip
        await store.add_callbacks([], subs)
        start = await store.history_tip()
        in_flight = early.transaction()
        await in_flight.start()
        first = await deliver(early, "m_early")
        second = await deliver(late, "m_late")  # committed at once
        assert first < second
        committed = await late.fetchval("SELECT max(id) FROM events")
        assert committed == second  # what a cursor on ids alone would move to

        store.tip_wait = 0.0  # the tip now, without waiting for the writer in flight
        held = await store.history_tip()
        assert await store.results_between(start, held, {"text.delivered"}, 10) == []
        assert await store.subscribed_changes(start, held, 10) == []
        # Asked again with time to wait: the tip waits for the older writer to end.
        store.tip_wait = 30.0
        asked = asyncio.create_task(store.history_tip())
        done, _ = await asyncio.wait({asked}, timeout=0.5)
        assert not done
        await in_flight.commit()
        tip = await asked
        assert tip.texts > held.texts

        found = await store.results_between(held, tip, {"text.delivered"}, 10)
        assert [r.seen.source_id for r in found] == ["m_early", "m_late"]
        changes = await store.subscribed_changes(held, tip, 10)
        assert [(s.source_id, c.status) for s, c in changes] == [
            ("m_early", "Delivered"), ("m_late", "Delivered"),
        ]  # fmt: skip
        assert [c.event for _, c in changes] == [r.seq for r in found]
        # The cursors keep such places exactly.
        await store.add_runs([], tip)
        assert await store.automation_cursor() == tip
        await store.add_callbacks([], [], tip)
        assert await store.callback_cursor() == tip
        assert await store.results_between(tip, await store.history_tip(), {"text.delivered"},
                                           10) == []  # fmt: skip
    finally:
        await early.close()
        await late.close()


async def test_the_tip_includes_the_texts_writes_handed_over_before_it(
    store: PostgresStore,
) -> None:
    """A result the engine has shown (its write handed over, not yet committed) is in
    the tip asked for after it, as on SQLite."""
    start = await store.history_tip()
    message = await store.insert_message(make_message("m_soon"), [])
    sending, message = transition(message, TextStatus.SENDING, at=T0, source=Source.SCHEDULER,
                                  attempt_id="att_1", send_started_at=T0)  # fmt: skip
    sent, message = transition(message, TextStatus.SENT, at=T0, source=Source.PROVIDER,
                               provider_id="SM1")  # fmt: skip
    written = [store.record_soon([sending]), store.record_soon([sent])]
    tip = await store.history_tip()
    assert all(w.done() for w in written)
    found = await store.results_between(start, tip, {"text.sent"}, 10)
    assert [(r.seen.source_id, r.seen.result) for r in found] == [("m_soon", "text.sent")]


def run_of(source_id: str) -> Run:
    return Run(rule="thank", source_id=source_id, result="text.delivered", due_at=T0,
               contact="+14155550123", sender="+14155550100")  # fmt: skip


async def test_two_workers_adding_the_same_run_make_it_once(url: str) -> None:
    async with PostgresStore(url) as one, PostgresStore(url) as two:
        for n in range(20):
            runs = [run_of(f"m{n}"), run_of(f"m{n}_b")]
            made = await asyncio.gather(one.add_runs(runs), two.add_runs(runs[::-1]))
            assert sorted(r.source_id for batch in made for r in batch) == [f"m{n}", f"m{n}_b"]
        assert len(await one.list_runs(100)) == 40


def campaign() -> Campaign:
    return Campaign(
        id="cmp_1", name="Spring", channel=CampaignChannel.TEXT, template="Hi {name}",
        senders=("+14155550100", "+14155550101"), send_window="09:00-20:00",
        outside_window=OutsideWindow.HOLD, validity=timedelta(hours=6), start_at=None,
        state=CampaignState.RUNNING, created_at=T0, updated_at=T0,
    )  # fmt: skip


def contact(line: int) -> Contact:
    return Contact(campaign_id="cmp_1", line=line, phone=f"+1415{line:07d}",
                   sender=f"+141555501{line % 2:02d}", tz="America/Los_Angeles",
                   fields={"name": f"n{line}"}, state=ContactState.PENDING)  # fmt: skip


async def test_contacts_in_batches_and_a_refused_batch_writes_none_of_it(
    store: PostgresStore,
) -> None:
    await store.create_campaign(campaign())
    for first in range(1, 20_001, 5000):
        await store.add_contacts([contact(line) for line in range(first, first + 5000)])
    assert await store.contact_counts("cmp_1") == {ContactState.PENDING: 20_000}
    at = await store.contacts_at("cmp_1", [19_999, 1, 5000, 5001, 30_000])
    assert [c.line for c in at] == [1, 5000, 5001, 19_999]
    assert at[0] == contact(1)
    # A batch with a line already stored is refused whole.
    with pytest.raises(StoreError, match="duplicate key"):
        await store.add_contacts([contact(line) for line in range(20_001, 20_011)] + [contact(7)])
    assert await store.contacts_at("cmp_1", [20_001]) == []
    queued = [dataclasses.replace(contact(n), state=ContactState.QUEUED, attempt=1,
                                  message_id=f"msg_{n}") for n in range(1, 1001)]  # fmt: skip
    await store.set_contacts(queued)
    assert await store.contact_counts("cmp_1") == {
        ContactState.PENDING: 19_000, ContactState.QUEUED: 1000,
    }  # fmt: skip
    assert await store.contacts_in("cmp_1", [ContactState.QUEUED], 2) == queued[:2]


async def test_campaigns_runs_and_the_outbox_survive_close_and_reopen(url: str) -> None:
    mark = Cursor(texts=(1 << 63) * 900 + 12, calls=3, emails=0)
    async with PostgresStore(url) as store:
        await store.create_campaign(campaign())
        await store.add_contacts([contact(1), contact(2)])
        await store.add_runs([run_of("m1")], mark)
        await store.add_rule("thank", '{"name": "thank"}', T0)
    async with PostgresStore(url) as store:
        assert await store.get_campaign("cmp_1") == campaign()
        assert [c.line for c in await store.next_contacts(
            "cmp_1", "+14155550101", {"America/Los_Angeles"}, 5)] == [1]  # fmt: skip
        assert await store.automation_cursor() == mark
        assert [r.source_id for r in await store.due_runs(T0, 5)] == ["m1"]
        assert await store.stored_rules() == [("thank", '{"name": "thank"}')]


# -- email and engagement (part C) -------------------------------------------------------


async def test_engagement_rows_are_the_memory_stores_for_every_query(url: str) -> None:
    """The scripted histories of texts, calls, plays and emails give PostgreSQL the very
    rows the memory store gives, for every query of the engagement cases."""
    queries = [q for q, *_ in ENGAGEMENT_CASES.values()] + [q for q, _ in EMAIL_CASES.values()]
    found = []
    for opened in (MemoryStore(), PostgresStore(url)):
        async with opened as store:
            await write_history(cast(Store, store))
            await write_email_history(cast(Store, store))
            found.append([Counter(await store.engagement(q)) for q in queries])
    memory, postgres = found
    assert memory == postgres
    assert all(memory[:3]), "the histories have rows"


async def test_an_automations_engagement_is_found_whatever_the_databases_locale(
    postgres: Cluster,
) -> None:
    """In a database ordering text by ICU's en-US rules (where ';' sorts before ':'),
    the triggers of one automation still form the byte range the metrics ask for."""
    name = f"icu_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 '
                            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'")  # fmt: skip
    finally:
        await admin.close()
    async with PostgresStore(postgres.url(name)) as store:
        assert await store.pool.fetchval(
            "SELECT 'automation:thanks:msg_a' < 'automation:thanks;'"
        ) is False  # fmt: skip
        await write_history(cast(Store, store))
        await write_email_history(cast(Store, store))

        thanks = compute(await store.engagement(MetricsQuery(automation="thanks")))
        clicks = compute(await store.engagement(MetricsQuery(automation="on_click")))
        escalate = compute(await store.engagement(MetricsQuery(automation="escalate")))

    assert thanks.text == counts(TEXT, {"Sent": 1, "Delivered": 1, "Play": 1, "Activity": 1})
    assert clicks.email == counts(EMAIL, {"Activity": 1})
    assert escalate.voice == counts(VOICE, {"Activity": 1})


async def test_emails_links_and_plays_survive_close_and_reopen(url: str) -> None:
    async with PostgresStore(url) as store:
        email = await insert_email(cast(Store, store), make_email("e1"))
        event, sending = email_status(email, EmailStatus.SENDING, at=at(1),
                                      source=Source.SCHEDULER)  # fmt: skip
        await store.update_email(sending, [event], (RELAY, at(2)))
        await store.add_voice_link("tok", message_id="e1", campaign_id="c1", message="Hi",
                                   created_at=T0)  # fmt: skip
        await store.record_play("tok", at(3))
        before = Counter(await store.engagement(MetricsQuery()))
    async with PostgresStore(url) as store:
        assert await store.get_email("e1") == sending
        assert await store.email_history("e1") == [*first_email_events(email), event]
        assert await store.email_slots() == {RELAY: at(2)}
        assert await store.voice_link("tok") == ("e1", "Hi")
        assert Counter(await store.engagement(MetricsQuery())) == before
        assert sum(before.values()) == 1  # the play, counted for the email
        after = await insert_email(cast(Store, store), make_email("e2"))
        assert after.seq > email.seq


async def test_two_stores_on_one_database_share_emails_and_a_relays_slot(url: str) -> None:
    """Two workers' stores inserting at once get distinct seqs (each its own in the
    order it called), see each other's emails, and a relay's slot moved by both ends
    at the later of their slots."""
    async with PostgresStore(url) as one, PostgresStore(url) as two:
        stores = [one, two] * 10
        inserted = await asyncio.gather(*(
            insert_email(cast(Store, s), make_email(f"e{i}")) for i, s in enumerate(stores)
        ))  # fmt: skip
        seqs = [e.seq for e in inserted]
        assert len(set(seqs)) == len(seqs)
        for mine in (seqs[0::2], seqs[1::2]):
            assert mine == sorted(mine)
        assert await two.get_email("e0") == inserted[0]
        assert [e.id for e in await one.emails_in_status([EmailStatus.QUEUED], 100)] == [
            e.id for e in sorted(inserted, key=lambda e: e.seq)
        ]

        slots = [at(k) for k in range(1, 21)]
        random.Random(7).shuffle(slots)
        await asyncio.gather(*(
            s.update_email(e, [], (RELAY, when))
            for s, e, when in zip(stores, inserted, slots, strict=True)
        ))  # fmt: skip
        assert await one.email_slots() == await two.email_slots() == {RELAY: at(20)}


# -- consent, Do Not Text and calls (part B) -----------------------------------------------


async def test_two_stores_add_and_remove_a_number_once(url: str) -> None:
    """Two workers adding one number at once write one opt-out between them (the first
    in force is what both answer), and removing it at once writes one opt-in: one of all
    the removals reports it."""
    numbers = [f"+1415555{i:04d}" for i in range(10)]
    async with PostgresStore(url) as one, PostgresStore(url) as two:
        added = await asyncio.gather(*(
            s.dnt_add(DntEntry(number=n, added_at=at(k), added_by=f"worker{k}"))
            for n in numbers for k, s in enumerate((one, two))
        ))  # fmt: skip
        listed = await one.dnt_many(numbers)
        assert set(listed) == set(numbers)
        assert list(added) == [listed[n] for n in numbers for _ in range(2)]
        assert await two.dnt_many(numbers) == listed

        removed = await asyncio.gather(*(
            s.dnt_remove(n) for n in numbers for s in (one, two, one, two)
        ))  # fmt: skip
        for i in range(len(numbers)):  # of each number's four removals, one reports it
            assert removed[4 * i : 4 * i + 4].count(True) == 1
        assert await two.dnt_list(100) == []
        ledger = await one.consent_entries(0, 100)
        assert Counter((e.contact, e.action) for e in ledger) == {
            (n, action): 1 for n in numbers for action in (Action.OPT_OUT, Action.OPT_IN)
        }


async def test_calls_consent_and_slots_survive_close_and_reopen(url: str) -> None:
    async with PostgresStore(url) as store:
        s = cast(Store, store)
        call = await insert_call(s, make_call("c1", idempotency_key="k-1"))
        await insert_call(s, make_call("c2", recipient="+14155550123"))
        _, placing = await move_call(s, call, CallStatus.PLACING, when=at(1), attempt_id="a1",
                                     placed_at=at(1), next_slot=(ACCOUNT, at(1.25)))  # fmt: skip
        _, initiated = await move_call(s, placing, CallStatus.INITIATED, when=at(2),
                                       provider_id="CA1")  # fmt: skip
        step = CallEvent(call_id="c1", at=at(3), result=VoiceResult.SAY, step=2,
                         source=Source.PROVIDER)  # fmt: skip
        await store.update_call(initiated, [step])
        await store.dnt_add(DntEntry(number="+14155550999", added_at=at(4), added_by="ops"))
        before = [await store.get_call(c) for c in ("c1", "c2")]
        history = await store.call_history("c1")
        ledger = await store.consent_entries(0, 10)

    async with PostgresStore(url) as store:
        assert [await store.get_call(c) for c in ("c1", "c2")] == before
        assert await store.call_history("c1") == history
        assert history[-1] == step
        assert await store.call_by_provider_id("CA1") == before[0]
        assert await store.call_by_idempotency_key("k-1") == before[0]
        assert await store.call_slots() == {ACCOUNT: at(1.25)}
        assert await store.consent_entries(0, 10) == ledger
        assert await store.dnt_get("+14155550999") is not None
        # Calls keep their order after a reopen: a new one goes behind the old ones.
        newest = await insert_call(cast(Store, store), make_call("c3"))
        assert max(c.seq for c in before if c is not None) < newest.seq
        queued = await store.calls_in_status({CallStatus.QUEUED}, 10)
        assert [c.id for c in queued] == ["c2", "c3"]


async def test_a_call_update_the_database_refuses_writes_none_of_it(
    store: PostgresStore,
) -> None:
    """An event the database refuses (text with a NUL character) takes the projection
    and the account's slot with it: the update is one statement."""
    call = await insert_call(cast(Store, store), make_call("c1"))
    event, placing = call_status(call, CallStatus.PLACING, at=at(1), source=Source.SCHEDULER)
    bad = CallEvent(call_id="c1", at=at(1), result=VoiceResult.SAY, detail="a\x00b")
    with pytest.raises(StoreError) as refused:
        await store.update_call(placing, [event, bad], (ACCOUNT, at(2)))
    assert not isinstance(refused.value, StoreUnavailable)
    assert await store.get_call("c1") == call
    assert await store.call_history("c1") == first_call_events(call)
    assert await store.call_slots() == {}

    await store.update_call(placing, [event], (ACCOUNT, at(2)))  # it takes writes again
    assert await store.get_call("c1") == placing
    assert await store.call_slots() == {ACCOUNT: at(2)}


async def test_two_stores_on_one_database_share_calls_and_an_accounts_slot(url: str) -> None:
    """Two workers' stores inserting calls at once get distinct seqs (each its own in
    the order it called), see each other's calls, and an account's slot moved by both
    ends at the later of their slots."""
    async with PostgresStore(url) as one, PostgresStore(url) as two:
        stores = [one, two] * 10
        inserted = await asyncio.gather(*(
            insert_call(cast(Store, s), make_call(f"c{i}")) for i, s in enumerate(stores)
        ))  # fmt: skip
        seqs = [c.seq for c in inserted]
        assert len(set(seqs)) == len(seqs)
        for mine in (seqs[0::2], seqs[1::2]):
            assert mine == sorted(mine)
        assert await two.get_call("c0") == inserted[0]
        assert await one.call_counts() == {CallStatus.QUEUED: 20}

        slots = [at(k) for k in range(1, 21)]
        random.Random(11).shuffle(slots)
        await asyncio.gather(*(
            s.update_call(c, [], (ACCOUNT, when))
            for s, c, when in zip(stores, inserted, slots, strict=True)
        ))  # fmt: skip
        assert await one.call_slots() == await two.call_slots() == {ACCOUNT: at(20)}


async def test_a_database_restored_into_another_cluster_is_followed_on(url: str) -> None:
    """A dump restored into a younger cluster keeps the old transaction ids, which lie
    in this cluster's future: at the next start the old events are put before anything
    new, and the cursors move with them, so new results are read after the old ones."""
    async with PostgresStore(url) as store:
        db = await asyncpg.connect(url)
        try:
            for message_id in ("m_done", "m_waiting"):
                await queue_text(db, message_id)
            done, waiting = await deliver(db, "m_done"), await deliver(db, "m_waiting")
            # The old cluster's ids, far ahead of this one's.
            await db.execute("UPDATE events SET tx = tx + 1000000000000")
            rows = await db.fetch("SELECT tx, id FROM events ORDER BY id")
        finally:
            await db.close()
        [(tx_done, _), (tx_waiting, _)] = [(r["tx"], r["id"]) for r in rows]
        mark = Cursor(texts=place(tx_done, done))  # matched up to m_done
        await store.add_runs([], mark)
        sub = Subscription(channel=Channel.TEXT, source_id="m_waiting",
                           url="https://example.com/h", created_at=T0,
                           last_event=place(tx_waiting, waiting), last_seq=1)  # fmt: skip
        await store.add_callbacks([], [sub], mark)
    async with PostgresStore(url) as store:
        db = await asyncpg.connect(url)
        try:
            await queue_text(db, "m_new")
            await deliver(db, "m_new")
        finally:
            await db.close()
        cursor = await store.automation_cursor()
        assert cursor is not None
        tip = await store.history_tip()
        found = await store.results_between(cursor, tip, {"text.delivered"}, 10)
        assert [r.seen.source_id for r in found] == ["m_waiting", "m_new"]
        assert await store.callback_cursor() == cursor
        # The subscription's place moved too: its change already sent is not sent again.
        [(moved, change)] = await store.subscribed_changes(cursor, tip, 10)
        assert (change.source_id, change.event) == ("m_waiting", moved.last_event)


async def test_an_email_campaign_keeps_its_subject_and_html(store: PostgresStore) -> None:
    email = dataclasses.replace(
        campaign(), id="cmp_mail", channel=CampaignChannel.EMAIL, template="Hi {name}",
        senders=("Shop <shop@example.com>",), subject="News for {name}",
        html="<p>Hi {name}</p>",
    )  # fmt: skip
    await store.create_campaign(email)
    assert await store.get_campaign("cmp_mail") == email
    assert await store.list_campaigns(5) == [email]


# -- texts (part A) --------------------------------------------------------------------


async def test_two_stores_on_one_database_see_each_others_texts(url: str) -> None:
    """Two workers' stores: a text one queues is the other's head, the other's record
    is in the first's history, a next slot moves only later whoever writes it."""
    async with PostgresStore(url) as one, PostgresStore(url) as two:
        first = await one.insert_message(make_message("m1"), [])
        second = await two.insert_message(make_message("m2"), [])
        assert second.seq > first.seq
        assert [m.id for m in (await two.heads([first.sender], 5))[first.sender]] == ["m1", "m2"]
        step, sending = transition(first, TextStatus.SENDING, at=at(1), source=Source.SCHEDULER,
                                   attempt_id="att-1")  # fmt: skip
        await two.record([step], next_slots={first.sender: at(3)})
        await one.record([], next_slots={first.sender: at(2)})  # an earlier slot, committed late
        assert await one.get("m1") == sending
        assert [e.status for e in await one.history("m1")] == [TextStatus.SENDING]
        [number] = await one.numbers()
        assert (number.next_slot_at, number.depth) == (at(3), 1)


async def test_records_handed_over_together_commit_together_in_order(
    store: PostgresStore,
) -> None:
    """Records handed over without waiting are written in fewer transactions than
    records (a group commit), each one durable, the events in the order given and each
    number's slot at the latest."""
    texts = [await store.insert_message(make_message(f"m{i}", sender=f"+1415555{i:04d}"), [])
             for i in range(50)]  # fmt: skip
    before = store.write_seconds.count
    written = []
    for step_at, status in ((1, TextStatus.SENDING), (2, TextStatus.SENT)):
        for i, text in enumerate(texts):
            step, texts[i] = transition(text, status, at=at(step_at), source=Source.SCHEDULER,
                                        attempt_id=f"att-{i}")  # fmt: skip
            written.append(store.record_soon([step], next_slots={text.sender: at(step_at)}))
    await asyncio.gather(*written)
    assert store.write_seconds.count - before < len(written)
    for text in texts:
        assert await store.get(text.id) == text
        assert [e.status for e in await store.history(text.id)] == [TextStatus.SENDING,
                                                                     TextStatus.SENT]  # fmt: skip
    assert {n.next_slot_at for n in await store.numbers()} == {at(2)}


def test_only_a_deadlock_or_a_serialization_failure_is_run_again() -> None:
    """The one rule the texts' writes and the leases' statements follow: the ends of a
    transaction that running it again may cure, and no other end of class 40 (the
    leases ran every one again, the writes only these two)."""
    assert rolled_back(asyncpg.DeadlockDetectedError("deadlock detected"))  # 40P01
    assert rolled_back(asyncpg.SerializationError("could not serialize access"))  # 40001
    for other in (
        asyncpg.TransactionRollbackError("rolled back"),  # 40000
        asyncpg.TransactionIntegrityConstraintViolationError("deferred check"),  # 40002
        asyncpg.StatementCompletionUnknownError("completion unknown"),  # 40003
        asyncpg.LockNotAvailableError("lock timeout"),  # 55P03: unavailable, not run again
        StoreUnavailable("a write ended as a deadlock"),  # the port's error, not the cause
        None,
    ):
        assert not rolled_back(other), other


async def test_a_texts_write_ended_as_a_deadlock_runs_again(store: PostgresStore, url: str) -> None:
    """A text's write the database ends as a deadlock (here another session holds the
    text's number and then waits for the text, which the write holds) rolled back
    whole: it runs again, and is written once the other session lets go, instead of
    being reported unavailable (a store fault: the worker paused and probed)."""
    text = await store.insert_message(make_message("m1"), [])
    step, sending = transition(text, TextStatus.SENDING, at=at(1), source=Source.SCHEDULER,
                               attempt_id="att-1")  # fmt: skip
    admin = await asyncpg.connect(url)
    try:
        await admin.execute("SET deadlock_timeout = '30s'")  # the write finds the cycle
        holding = admin.transaction()
        await holding.start()
        await admin.execute("SELECT 1 FROM pacing_keys WHERE key = $1 FOR UPDATE", text.sender)
        writing = asyncio.create_task(store.record([step], next_slots={text.sender: at(2)}))

        async def waiting() -> bool:  # the write holds its text, waits for its number
            return bool(await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ))  # fmt: skip

        await wait_for(waiting, within=10, what="the write to wait for the number")
        # The cycle: this session waits for the text; the write is ended, and run again.
        await admin.execute("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE", text.id)

        async def run_again() -> bool:
            if writing.done():
                writing.result()  # ended: its error says why (it used to be the deadlock)
            return store.runs_again > 0

        await wait_for(run_again, within=10, what="the write to run again")
        await holding.rollback()
        await asyncio.wait_for(writing, timeout=10)
    finally:
        await admin.close()
    assert store.runs_again == 1
    assert await store.get(text.id) == sending
    assert [e.status for e in await store.history(text.id)] == [TextStatus.SENDING]
    assert [n.next_slot_at for n in await store.numbers()] == [at(2)]


async def test_texts_and_slots_survive_close_and_reopen(url: str) -> None:
    async with PostgresStore(url) as store:
        kept = await store.insert_message(make_message("m1", idempotency_key="k1"), [])
        await store.set_paused(kept.sender, True)
        await store.record([], next_slots={kept.sender: at(5)})
    async with PostgresStore(url) as store:
        assert await store.get("m1") == kept
        assert await store.by_idempotency_key("k1") == kept
        [number] = await store.numbers()
        assert (number.number, number.paused, number.next_slot_at) == (kept.sender, True, at(5))
        assert (await store.insert_message(make_message("m2"), [])).seq > kept.seq


async def test_a_database_that_refuses_writes_is_unavailable_until_it_takes_them(
    postgres: Cluster, url: str
) -> None:
    """Its connections dropped, then read-only: each refusal is StoreUnavailable (the
    service pauses and probes), nothing is half written, and the same store writes
    again once the database takes writes."""
    database = url.split("/")[3].split("?", maxsplit=1)[0]
    admin = await asyncpg.connect(postgres.url())

    async def drop_connections() -> None:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )

    try:
        async with PostgresStore(url) as store:
            kept = await store.insert_message(make_message("m1"), [])
            await admin.execute(
                f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'
            )
            await drop_connections()
            refusals = 0
            for attempt in range(5):  # a dropped connection, then the read-only database
                with pytest.raises(StoreUnavailable):
                    await store.insert_message(make_message(f"r{attempt}"), [])
                refusals += 1
            with pytest.raises(StoreUnavailable):
                await store.probe()
            assert await store.get("m1") == kept  # reads still answer
            assert refusals == 5
            await admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
            await drop_connections()
            deadline = asyncio.get_running_loop().time() + 10
            while True:  # the probe, as the service runs it, until the store takes writes
                try:
                    await store.probe()
                    break
                except StoreUnavailable:
                    assert asyncio.get_running_loop().time() < deadline, "never took writes"
            again = await store.insert_message(make_message("m2"), [])
            assert again.seq > kept.seq
            assert {m.id for m in await store.in_status(TextStatus.QUEUED, 10)} == {"m1", "m2"}
    finally:
        await admin.close()
