"""The core's part of a graceful stop: refusing new requests, ending what still rings."""

from __future__ import annotations

from helpers import request
from test_endpoint import UDP, advance, codes, make, responses


def test_draining_refuses_new_requests_but_serves_what_is_in_flight() -> None:
    ep, _ = make()
    invite = request("INVITE", "180-2s-486")
    assert codes(ep.receive(invite, UDP, 0.0)) == [100, 180]
    ep.draining = True
    out = responses(ep.receive(request("INVITE", "486", branch="z9hG4bK-new"), UDP, 0.5))
    assert [r.status for r in out] == [503]
    assert out[0].reason == "Service Unavailable (shutting down)"
    assert out[0].header("Retry-After") == "5"
    assert ep.stats["draining"] == 1 and ep.stats["overload"] == 0
    assert codes(ep.receive(invite, UDP, 1.0)) == [180]  # a retransmission: still served
    bye = request("BYE", "x", branch="z9hG4bK-bye", to="<sip:x@127.0.0.1>;tag=t")
    assert codes(ep.receive(bye, UDP, 1.0)) == [200]  # in a dialog: served
    assert codes(advance(ep, 2.0)) == [486]  # the plan runs to its end


def test_end_pending_gives_what_still_rings_a_final_and_leaves_the_rest() -> None:
    ep, records = make()
    assert codes(ep.receive(request("INVITE", "180"), UDP, 0.0)) == [100, 180]
    delayed = request("MESSAGE", "1s-200", branch="z9hG4bK-m", call_id="m@test")
    assert codes(ep.receive(delayed, UDP, 0.0)) == []
    busy = request("INVITE", "486", branch="z9hG4bK-b", call_id="b@test")
    assert codes(ep.receive(busy, UDP, 0.0)) == [100, 486]  # awaits its ACK
    assert codes(ep.end_pending(0.5)) == [503, 503]
    assert sorted(r.codes for r in records) == [(100, 180, 503), (100, 486), (503,)]
    assert codes(ep.end_pending(0.6)) == []  # nothing left without a final
    # Timer G still resends the INVITEs' finals over UDP until their ACKs.
    assert sorted(codes(advance(ep, 1.0))) == [486, 503]
