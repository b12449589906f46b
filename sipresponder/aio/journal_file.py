"""``--journal-file``: every journaled message and violation as one JSON line, rotated.

What belongs here: ``JournalFile``, the file the journal's sink writes.  It is appended
to, flushed every second (and on close) rather than once a line, and rotated at
``--journal-file-max`` bytes the way logrotate's ``rotate 1`` would: the file becomes
``FILE.1`` (replacing the previous one) and a new ``FILE`` starts, so the journal never
takes more than twice that on disk.  A write error (a full disk, a removed directory) is
logged once and ends the writing; the responder goes on answering.  Imports nothing of
the project: I/O glue, beside ``logs``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any, TextIO

log = logging.getLogger("sipresponder")

#: The default size at which the file rotates (``--journal-file-max``).
DEFAULT_MAX_BYTES = 256 << 20


class JournalFile:
    """One JSON object a line, appended to ``path``; at ``max_bytes`` (0: never) the
    file is renamed ``path.1`` and a new one begun.  Raises ``OSError`` only from
    ``__init__`` (the file cannot be opened)."""

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._out: TextIO | None = open(path, "a", encoding="utf-8")  # noqa: SIM115
        #: The bytes in the current file (what it held when opened, then what we wrote).
        self.bytes = os.fstat(self._out.fileno()).st_size
        #: Times the file was rotated.
        self.rotations = 0

    @property
    def writing(self) -> bool:
        """Still writing (no write error so far, not closed)."""
        return self._out is not None

    def write(self, line: dict[str, Any]) -> None:
        """Append one record.  ``json.dumps`` escapes every non-ASCII character, so the
        length of the line is its length in bytes."""
        if self._out is None:
            return
        text = json.dumps(line, default=str) + "\n"
        try:
            if self.max_bytes and self.bytes and self.bytes + len(text) > self.max_bytes:
                self._rotate()
            out = self._out
            if out is not None:
                out.write(text)
                self.bytes += len(text)
        except OSError as exc:  # a full disk must not stop the responder
            self._fail(exc)

    def _rotate(self) -> None:
        out = self._out
        assert out is not None
        self._out = None
        out.close()
        os.replace(self.path, self.path + ".1")
        self._out = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self.bytes = 0
        self.rotations += 1

    def flush(self) -> None:
        out = self._out
        if out is not None:
            try:
                out.flush()
            except OSError as exc:
                self._fail(exc)

    def close(self) -> None:
        out = self._out
        self._out = None
        if out is not None:
            try:
                out.close()
            except OSError as exc:
                log.error("--journal-file: %s", exc)

    def _fail(self, exc: OSError) -> None:
        log.error("--journal-file: %s; no longer writing it", exc)
        out = self._out
        self._out = None
        if out is not None:
            with contextlib.suppress(OSError):  # already reported: the write failed
                out.close()
