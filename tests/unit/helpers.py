"""Message builders shared by the unit tests."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from sipresponder import native
from sipresponder.sip.serializer import serialize_request


def request(
    method: str = "OPTIONS",
    user: str = "alice",
    *,
    branch: str = "z9hG4bK-1",
    via: str | None = None,
    call_id: str = "call-1@test",
    cseq: str | None = None,
    from_tag: str = "ft1",
    to: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    uri: str | None = None,
) -> bytes:
    headers = [
        ("Via", via or f"SIP/2.0/UDP 192.0.2.1:5062;branch={branch}"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:caller@192.0.2.1>;tag={from_tag}"),
        ("To", to or f"<sip:{user}@127.0.0.1>"),
        ("Call-ID", call_id),
        ("CSeq", cseq or f"1 {method}"),
    ]
    headers += extra or []
    return serialize_request(method, uri or f"sip:{user}@127.0.0.1", headers, body)


SDP_OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 96 0 8 101\r\n"
    b"a=rtpmap:96 L16/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=sendonly\r\n"
    b"m=video 51372 RTP/AVP 31\r\n"
)


#: The bench scripts, which are no package: tests load them by path.
BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_script(name: str) -> ModuleType:
    """``bench/<name>.py`` as a module (registered while it runs: dataclasses look their
    module up by name)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def load_c_module(name: str) -> ModuleType | None:
    """The C module ``name`` (dotted, as in ``native.C_MODULES``) loaded from its built
    file, or None when it was not built: so that its tests run in the pure-Python test run
    too, where the package itself ignores it."""
    path = native.extensions().get(name)
    if path is None:
        return None
    full = f"sipresponder.{name}"
    loader = importlib.machinery.ExtensionFileLoader(full, str(path))
    spec = importlib.util.spec_from_file_location(full, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
