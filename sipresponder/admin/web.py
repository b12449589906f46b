"""The web view of the admin server: the calls page, a call's page, and their live feed.

What belongs here: the routes of the pages (``/``, ``/calls/{call_id}``) and of their
files (``/static/...``, plain HTML, CSS and JavaScript shipped in ``admin/static``,
nothing fetched from elsewhere), and ``LiveCalls``, the server-sent events of
``/api/events`` that tell the open pages which calls changed.  The pages read the admin
API itself (``/api/calls``, ``/api/calls/{call_id}``, ``/api/rules``, ``/api/journal``)
with the same token rule.  Imports ``core.journal`` and ``core.calls`` (what the journal
tells), and aiohttp.

The feed costs nothing while no page is open: ``LiveCalls`` watches the journal
(``Journal.on_update``) only while it has a subscriber.  Then each changed call is noted
(a dict keyed by Call-ID), and every ``BATCH_SECONDS`` the calls noted go out as one
event, at most ``MAX_BATCH`` of them (the rest in the next).  Each subscriber has a queue
of at most ``QUEUE_EVENTS`` events: one that does not keep up (a slow or paused browser)
is dropped, its connection closed (which ends a write it is stuck in); its page's
EventSource reconnects and reads the list afresh.  So a slow browser never holds the
server's memory or its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from ..core.calls import Call
from ..core.journal import Journal

log = logging.getLogger(__name__)

#: The pages' files, in the package.
STATIC: Final = Path(__file__).resolve().parent / "static"
#: The files served under ``/static/`` and their types: nothing else is.
FILES: Final = {
    "calls.js": "text/javascript",
    "call.js": "text/javascript",
    "common.js": "text/javascript",
    "style.css": "text/css",
}
#: Seconds between two events of the feed (the changes of that time go together).
BATCH_SECONDS: Final = 0.25
#: Calls at most in one event.
MAX_BATCH: Final = 500
#: Events waiting for one subscriber at most: beyond, it is dropped.
QUEUE_EVENTS: Final = 32
#: Seconds between two comments on a quiet stream, so that a gone browser is noticed.
KEEPALIVE_SECONDS: Final = 15.0
#: Subscribers at once at most (open pages); another is refused with 503.
MAX_SUBSCRIBERS: Final = 64


class Subscriber:
    """One open page's stream: its queue of events (each a JSON text) and whether it
    was dropped."""

    __slots__ = ("dropped", "queue", "transport")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_EVENTS)
        self.dropped = False
        #: Its connection: closed when it is dropped, which ends a write it is stuck in.
        self.transport: asyncio.BaseTransport | None = None


class LiveCalls:
    """The calls that changed, told to the subscribers in batches (see the module)."""

    def __init__(self, journal: Callable[[], Journal | None]) -> None:
        self._journal = journal
        self.subscribers: set[Subscriber] = set()
        self._changed: dict[str, Call] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._watched: Journal | None = None
        #: Subscribers dropped for not keeping up (for the tests and the log).
        self.dropped = 0

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self.subscribers.add(subscriber)
        journal = self._journal()
        if self._watched is None and journal is not None:
            journal.on_update.append(self._changed_call)
            self._watched = journal
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        if not self.subscribers:
            self.close()

    def close(self) -> None:
        """Stop watching (no subscriber left, or the server stops)."""
        if self._watched is not None:
            self._watched.on_update.remove(self._changed_call)
            self._watched = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._changed.clear()

    def end(self) -> None:
        """The server stops: every stream ends now (not at the runner's shutdown timeout)."""
        for subscriber in list(self.subscribers):
            subscriber.dropped = True
            with contextlib.suppress(asyncio.QueueFull):
                subscriber.queue.put_nowait("")  # wakes its handler
        self.subscribers.clear()
        self.close()

    def reset(self) -> None:
        """The journal was cleared: the pages read the list afresh."""
        self._changed.clear()
        self._send(json.dumps({"reset": True}))

    def _changed_call(self, call: Call) -> None:
        self._changed[call.call_id] = call
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if not self._changed:
            return
        ids = list(self._changed)[:MAX_BATCH]
        calls = [self._changed.pop(call_id) for call_id in ids]
        self._send(json.dumps({"calls": [c.to_dict() for c in calls]}, default=str))
        if self._changed:
            self._timer = asyncio.get_running_loop().call_later(BATCH_SECONDS, self._flush)

    def _send(self, event: str) -> None:
        for subscriber in list(self.subscribers):
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                # Not keeping up: its stream ends, and its page reconnects.
                subscriber.dropped = True
                self.dropped += 1
                self.subscribers.discard(subscriber)
                if subscriber.transport is not None:
                    subscriber.transport.close()
                log.info("admin web view: a page that did not keep up was dropped")
        if not self.subscribers:
            self.close()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/events``: the feed as server-sent events (``event: calls``)."""
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            raise web.HTTPServiceUnavailable(text="too many pages open")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        subscriber = self.subscribe()
        subscriber.transport = request.transport
        try:
            # The browser's EventSource reconnects after a second when the stream ends.
            await response.write(b"retry: 1000\n\n")
            while not subscriber.dropped:
                try:
                    event = await asyncio.wait_for(subscriber.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if subscriber.dropped:
                    break
                await response.write(b"event: calls\ndata: " + event.encode() + b"\n\n")
        except ConnectionError:
            pass  # the page went away (or was dropped: its connection closed)
        finally:
            self.unsubscribe(subscriber)
        return response


def page_routes(live: LiveCalls) -> list[web.RouteDef]:
    """The pages, their files and the feed."""
    return [
        web.get("/", _page("calls.html")),
        web.get("/calls/{call_id:.+}", _page("call.html")),
        web.get("/static/{name}", _static),
        web.get("/api/events", live.stream),
    ]


def is_page(path: str) -> bool:
    """Whether ``path`` is a page or one of its files: they hold no data, so they are
    served without the token (the API they read asks for it)."""
    return path == "/" or path.startswith(("/calls/", "/static/"))


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return handler


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(
        STATIC / name, headers={"Content-Type": FILES[name], "Cache-Control": "no-cache"}
    )
