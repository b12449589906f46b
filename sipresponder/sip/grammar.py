"""The generic rules of SIP text that several modules read with.

What belongs here: the pieces of the RFC 3261 grammar that are not one header's — the
``token`` characters of §25.1 (header names, methods, URI schemes, Via transports, tags,
auth schemes and parameters) and the splitting of a comma-separated header value outside
quoted strings and angle brackets (§7.3.1).  A rule only one module uses stays in it.
Standard library only; imports nothing of the package.
"""

from __future__ import annotations

import re
import string
from typing import Final

#: RFC 3261 §25.1 ``token`` characters: ``text.strip(TOKEN_CHARS)`` is empty when every
#: character of ``text`` is one (a check without a regex call).
TOKEN_CHARS: Final = string.ascii_letters + string.digits + ".!%*_+`'~-"
TOKEN_RE = re.compile(f"[{re.escape(TOKEN_CHARS)}]+")


def split_commas(value: str, *, keep_empty: bool = False) -> list[str]:
    """Split a header value on commas that are outside quotes and ``<...>`` (§7.3.1).

    Empty elements (``a,,b``) are dropped, or kept as ``""`` with ``keep_empty``.
    """
    if '"' not in value and "<" not in value:
        plain = [part.strip() for part in value.split(",")]
        return plain if keep_empty else [part for part in plain if part]
    parts: list[str] = []
    start = 0
    quoted = False
    angle = False
    escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True  # §25.1 quoted-pair inside a quoted-string
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            part = value[start:i].strip()
            if part or keep_empty:
                parts.append(part)
            start = i + 1
    part = value[start:].strip()
    if part or keep_empty:
        parts.append(part)
    return parts
