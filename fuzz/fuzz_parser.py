"""Fuzz target: one datagram (or one framed TCP message) into the parser and the endpoint.

Fails when ``parse_message`` raises anything but ``ParseError``, when a request it accepts
does not parse again to the same fields once written out, or when ``Endpoint.receive``
counts an internal error.  ``make fuzz`` runs it; by hand:

    python fuzz/fuzz_parser.py -max_total_time=60 build/fuzz/parser fuzz/corpus/parser
    python fuzz/fuzz_parser.py build/fuzz/crash-...      # replay one input
"""

from __future__ import annotations

from harness import instrumented, main

with instrumented():
    from sipresponder.core.config import Config
    from sipresponder.core.endpoint import Endpoint
    from sipresponder.core.flow import Flow
    from sipresponder.errors import ParseError
    from sipresponder.sip.message import Request, display_name
    from sipresponder.sip.parser import parse_message
    from sipresponder.sip.serializer import serialize_request

UDP = Flow("udp", ("192.0.2.1", 5062), ("127.0.0.1", 5060))
TCP = Flow("tcp", ("192.0.2.1", 40000), ("127.0.0.1", 5060), conn="conn-1")
CONFIG = Config(secret=b"fuzz", max_message_size=8192)


def fields(req: Request) -> tuple[object, ...]:
    headers = [(k, v) for k, v in req.headers if k != "content-length"]
    return (req.method, req.uri, req.version.upper(), headers, req.vias, req.top_via)


def test_one_input(data: bytes) -> None:
    for stream in (False, True):
        try:
            msg = parse_message(data, stream=stream, max_size=CONFIG.max_message_size)
        except ParseError:
            continue
        if isinstance(msg, Request):
            headers = [(display_name(k), v) for k, v in msg.headers if k != "content-length"]
            again = parse_message(serialize_request(msg.method, msg.uri, headers, msg.body))
            assert isinstance(again, Request) and fields(again) == fields(msg), data
            assert (again.body, again.cseq, again.call_id) == (msg.body, msg.cseq, msg.call_id)
    ep = Endpoint(CONFIG)
    ep.receive(data, UDP, 0.0)
    ep.receive(data, TCP, 0.0)
    ep.handle_timers(1000.0)
    assert ep.stats["internal_errors"] == 0, data


if __name__ == "__main__":
    main(test_one_input)
