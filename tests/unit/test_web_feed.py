"""The web pages' live feed (``admin/web.LiveCalls``) on a real event loop with a real
journal: it watches the journal only while a page is subscribed, sends the calls changed
in batches, bounds each subscriber's queue and drops one that does not keep up, and
tells the pages when the journal is cleared."""

from __future__ import annotations

import asyncio
import json

from sipresponder.admin import web as feed
from sipresponder.admin.web import LiveCalls, is_page
from sipresponder.core.calls import Entry
from sipresponder.core.journal import Journal


def invite(call_id: str, time: float = 1.0) -> Entry:
    raw = (
        f"INVITE sip:486@127.0.0.1 SIP/2.0\r\nFrom: <sip:a@b>;tag=x\r\nCall-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n\r\n"
    ).encode()
    return Entry(
        time,
        "in",
        "udp",
        "127.0.0.1:5070",
        "127.0.0.1:5060",
        raw,
        call_id,
        "INVITE",
        1,
        uri="sip:486@127.0.0.1",
    )


def run(test: object) -> None:
    asyncio.run(test)  # type: ignore[arg-type]


def test_the_journal_is_watched_only_while_a_page_is_open() -> None:
    async def test() -> None:
        journal = Journal()
        live = LiveCalls(lambda: journal)
        assert journal.on_update == []
        subscriber = live.subscribe()
        assert len(journal.on_update) == 1
        live.unsubscribe(subscriber)
        assert journal.on_update == []

    run(test())


def test_changed_calls_go_out_together_once_a_batch() -> None:
    async def test() -> None:
        journal = Journal()
        live = LiveCalls(lambda: journal)
        subscriber = live.subscribe()
        for n in range(5):
            journal.record(invite(f"call-{n}"))
        journal.record(invite("call-0", 2.0))  # the same call again: once in the batch
        assert subscriber.queue.empty()  # not yet: batched
        event = json.loads(await asyncio.wait_for(subscriber.queue.get(), 2))
        assert sorted(c["call_id"] for c in event["calls"]) == [f"call-{n}" for n in range(5)]
        assert event["calls"][0]["from"] == "<sip:a@b>" and event["calls"][0]["transport"] == "udp"
        assert subscriber.queue.empty()
        live.close()

    run(test())


def test_a_batch_holds_at_most_max_batch_calls_the_rest_follow() -> None:
    async def test() -> None:
        journal = Journal(max_calls=2000)
        live = LiveCalls(lambda: journal)
        subscriber = live.subscribe()
        for n in range(feed.MAX_BATCH + 7):
            journal.record(invite(f"call-{n}"))
        first = json.loads(await asyncio.wait_for(subscriber.queue.get(), 2))
        second = json.loads(await asyncio.wait_for(subscriber.queue.get(), 2))
        assert [len(first["calls"]), len(second["calls"])] == [feed.MAX_BATCH, 7]
        live.close()

    run(test())


def test_a_page_that_does_not_keep_up_is_dropped_and_the_others_stay() -> None:
    async def test() -> None:
        journal = Journal()
        live = LiveCalls(lambda: journal)
        slow, quick = live.subscribe(), live.subscribe()
        closed: list[bool] = []

        class Transport(asyncio.BaseTransport):
            def close(self) -> None:
                closed.append(True)

        slow.transport = Transport()
        for n in range(feed.QUEUE_EVENTS + 1):
            journal.record(invite(f"call-{n}"))
            live._flush()  # one event each, as if batches went by
            while not quick.queue.empty():
                quick.queue.get_nowait()
        assert slow.dropped and slow not in live.subscribers and closed == [True]
        assert slow.queue.qsize() == feed.QUEUE_EVENTS  # bounded
        assert not quick.dropped and live.subscribers == {quick} and live.dropped == 1
        live.unsubscribe(quick)
        assert journal.on_update == []

    run(test())


def test_a_cleared_journal_is_told() -> None:
    async def test() -> None:
        journal = Journal()
        live = LiveCalls(lambda: journal)
        subscriber = live.subscribe()
        live.reset()
        assert json.loads(subscriber.queue.get_nowait()) == {"reset": True}
        live.close()

    run(test())


def test_without_a_journal_nothing_is_watched() -> None:
    async def test() -> None:
        live = LiveCalls(lambda: None)
        subscriber = live.subscribe()
        live.unsubscribe(subscriber)
        assert live.subscribers == set()

    run(test())


def test_the_pages_and_their_files_are_not_the_api() -> None:
    assert is_page("/") and is_page("/calls/a@b") and is_page("/static/style.css")
    assert not is_page("/api/calls") and not is_page("/api/events") and not is_page("/metrics")
    for name in feed.FILES:
        assert (feed.STATIC / name).is_file(), name
    for page in ("calls.html", "call.html"):
        text = (feed.STATIC / page).read_text()
        # Nothing fetched from elsewhere: every script and style is the package's own.
        assert "http://" not in text and "https://" not in text
        for ref in ("/static/common.js", "/static/style.css"):
            assert ref in text


def test_the_server_stopping_ends_every_stream_at_once() -> None:
    async def test() -> None:
        journal = Journal()
        live = LiveCalls(lambda: journal)
        a, b = live.subscribe(), live.subscribe()
        for _ in range(feed.QUEUE_EVENTS):
            b.queue.put_nowait("{}")  # a full queue: its handler has events to wake it
        live.end()
        assert a.dropped and b.dropped and live.subscribers == set()
        assert a.queue.get_nowait() == ""  # wakes the handler waiting on it
        assert journal.on_update == []

    run(test())
