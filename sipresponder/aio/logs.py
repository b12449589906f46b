"""Logging: set-up for the CLI, and the per-transaction line that turns into a summary.

What belongs here: ``setup_logging`` (only the CLI calls it), the JSON formatter, and
``TransactionLog``, which writes one INFO line per transaction —
``INVITE sip:486@127.0.0.1 from 127.0.0.1:5061/udp -> 100 486`` — until more than
``rate`` transactions arrive in one second; the rest of that second is counted and
written as one summary line (counts per method and final code), so logging never
dominates under load.  Imports ``endpoint`` for the record type and ``responses`` for
the methods it counts apart (any other token counts as ``other``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

from ..core.flow import TransactionRecord
from ..sip.responses import KNOWN_METHODS

TRANSACTIONS = "sipresponder.transactions"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text", worker: int | None = None) -> None:
    """Configure the root logger once, to standard error (``worker``: its number in
    every line, ``w1`` in text, ``"worker": 1`` in JSON)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        tag = "" if worker is None else f"w{worker} "
        formatter = logging.Formatter(f"%(asctime)s {tag}%(levelname)s %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    if worker is not None:
        handler.addFilter(_WorkerTag(worker))
    root.addHandler(handler)
    root.setLevel(level)


class _WorkerTag(logging.Filter):
    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


class TransactionLog:
    """The INFO line per transaction, switching to a per-second summary above ``rate``."""

    def __init__(
        self,
        rate: float = 100.0,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.logger = logger or logging.getLogger(TRANSACTIONS)
        self.clock = clock
        self._window = -1
        self._enabled = False
        self._count = 0
        #: (method, final code or 0) -> transactions, this second.
        self._counts: dict[tuple[str, int], int] = {}

    def __call__(self, rec: TransactionRecord) -> None:
        # Once per transaction, so the work is done per second where it can be: whether
        # INFO is on is asked when a second begins (a level change shows within 1 s).
        second = int(self.clock())
        if second != self._window:
            self.flush()
            self._window = second
            self._enabled = self.logger.isEnabledFor(logging.INFO)
        if not self._enabled:
            return
        self._count += 1
        codes = rec.codes
        # A second's summary holds a count per method we know, and one for every other
        # token: a peer picking methods would otherwise grow it with each one it sends.
        method = rec.method if rec.method in KNOWN_METHODS else "other"
        key = (method, codes[-1] if codes else 0)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        if self._count <= self.rate:
            self.logger.info(
                "%s %s from %s -> %s",
                rec.method,
                rec.uri,
                rec.peer,
                " ".join(map(str, rec.codes)),
                extra={
                    "method": rec.method,
                    "uri": rec.uri,
                    "peer": rec.peer,
                    "codes": list(rec.codes),
                },
            )

    def tick(self) -> None:
        """Call about once a second: writes the summary of a busy second that ended."""
        if int(self.clock()) != self._window:
            self.flush()

    def flush(self) -> None:
        if self._count > self.rate:
            counts = {f"{method} {code or '-'}": n for (method, code), n in self._counts.items()}
            parts = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
            self.logger.info(
                "summary: %d transactions in 1 s (over %g/s, not logged one by one): %s",
                self._count,
                self.rate,
                parts,
                extra={"summary": counts, "transactions": self._count},
            )
        self._count = 0
        self._counts.clear()
