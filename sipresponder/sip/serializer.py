"""SIP messages -> bytes.

What belongs here: turning ``Response`` (and, for tests and tools, a request) into wire
bytes, with Content-Length always computed from the body (RFC 3261 §20.14).  Header text
is encoded back with ``surrogateescape`` so every byte that came in goes out unchanged.
Imports ``message`` only.
"""

from __future__ import annotations

from .message import Response


def serialize_response(resp: Response) -> bytes:
    parts = [f"{resp.version} {resp.status} {resp.reason}\r\n"]
    for name, value in resp.headers:
        parts.append(f"{name}: {value}\r\n")
    parts.append(f"Content-Length: {len(resp.body)}\r\n\r\n")
    head = "".join(parts).encode("utf-8", "surrogateescape")
    return head + resp.body if resp.body else head


def serialize_request(
    method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b""
) -> bytes:
    """A request as bytes; Content-Length is added from the body."""
    parts = [f"{method} {uri} SIP/2.0\r\n"]
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n")
    parts.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "".join(parts).encode("utf-8", "surrogateescape") + body
