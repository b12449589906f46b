"""Keys of ended transactions that are kept only to absorb retransmissions.

What belongs here: ``Absorbers``, a bounded first-in first-out table of transaction keys,
each with an expiry.  Two of its kind serve the endpoint:

- an INVITE answered with a non-2xx, once ACKed, is Confirmed for Timer I (T4 over UDP,
  RFC 3261 §17.2.1): it sends nothing more, it only swallows copies of the ACK and of
  the INVITE;
- an INVITE answered with a 2xx, once ACKed, ends, and its key is kept for Timer L
  (64*T1, RFC 6026 §8.11) so that a late copy of the INVITE is absorbed (§8.7), not taken
  for a new call.

Neither needs the request, the responses or a timer of its own: a key and an expiry are
enough.  The key is kept as its 64-bit hash (``hash`` of the transaction key, seeded per
process): well under half of what the tuple and its strings took, and the transaction
took kilobytes.  Two transaction keys would have to share a hash for a new INVITE to be
absorbed by mistake: with a full table of 131,072, about one chance in 10^14 per INVITE.
Every entry of one table lives equally long, so insertion order is
expiry order: entries go from the front when they expire, or when the table is full
(the oldest first; a new call is never refused for it).  No clock: every call takes
``now``.  Imports nothing of the project.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

#: The front of the queues is cut off once this many entries there are spent (and they
#: are at least half of the list): amortised O(1) per entry, no deque's generic calls.
_COMPACT: Final = 4096


class Absorbers:
    """Transaction keys that absorb retransmissions for ``lifetime`` seconds, at most
    ``limit`` of them."""

    __slots__ = ("_expiry", "_head", "_keys", "_times", "evicted", "lifetime", "limit")

    def __init__(self, lifetime: float, limit: int) -> None:
        if limit < 1:
            raise ValueError("an absorber table holds at least one key")
        self.lifetime = lifetime
        self.limit = limit
        #: Entries that went before their expiry because the table was full.
        self.evicted = 0
        #: hash(key) -> expiry
        self._expiry: dict[int, float] = {}
        # Insertion order, in two lists moved in step from ``_head`` on: the key's hash and
        # its expiry, so that an entry added again since (a later expiry) is recognised.
        self._keys: list[int] = []
        self._times: list[float] = []
        self._head = 0

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, key: Hashable, now: float) -> None:
        """Absorb ``key`` from ``now`` until ``now + lifetime``.  Expired entries are let
        go by ``expire``, which the owner calls with its timers, and here when full."""
        digest = hash(key)
        expiry = self._expiry
        if len(expiry) >= self.limit and digest not in expiry:
            self.expire(now)
            while len(expiry) >= self.limit:
                if self._pop_oldest():
                    self.evicted += 1
        until = now + self.lifetime
        expiry[digest] = until
        self._keys.append(digest)
        self._times.append(until)

    def holds(self, key: Hashable, now: float) -> bool:
        """Whether a message with ``key`` is to be absorbed at ``now``."""
        until = self._expiry.get(hash(key))
        return until is not None and until > now

    def expire(self, now: float) -> None:
        """Let go of every entry whose expiry has come."""
        times = self._times
        while self._head < len(times) and times[self._head] <= now:
            self._pop_oldest()

    def _pop_oldest(self) -> bool:
        """Take the front of the queues; True when it was still an entry (not one added
        again since, with a later expiry)."""
        head = self._head
        keys = self._keys
        times = self._times
        until = times[head]
        key = keys[head]
        keys[head] = 0  # their memory goes now, not at the next compaction
        times[head] = 0.0
        head += 1
        if head >= _COMPACT and head * 2 >= len(keys):
            del keys[:head]
            del times[:head]
            head = 0
        self._head = head
        if self._expiry.get(key) != until:
            return False
        del self._expiry[key]
        return True
