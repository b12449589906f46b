"""SDP offer/answer (RFC 3264)."""

from __future__ import annotations

import pytest
from helpers import SDP_OFFER

from sipresponder.errors import SdpError
from sipresponder.sip.sdp import build_answer, build_offer, check_offer


def lines(sdp: bytes) -> list[str]:
    assert sdp.endswith(b"\r\n")
    return sdp.decode().split("\r\n")[:-1]


def test_answer_picks_first_supported_codec_keeps_dtmf_mirrors_direction() -> None:
    answer = lines(build_answer(SDP_OFFER, "127.0.0.1", 42))
    assert answer[0] == "v=0"
    assert "o=sipresponder 42 42 IN IP4 127.0.0.1" in answer
    assert "c=IN IP4 127.0.0.1" in answer
    assert "t=0 0" in answer
    # L16 (96) is not ours: PCMU (0) is the first supported, DTMF (101) kept.
    assert "m=audio 40000 RTP/AVP 0 101" in answer
    assert "a=rtpmap:0 PCMU/8000" in answer
    assert "a=rtpmap:101 telephone-event/8000" in answer
    assert "a=fmtp:101 0-15" in answer
    assert "a=recvonly" in answer  # the offer was sendonly
    # §6: the video stream is rejected with port 0, the m= line kept in order.
    assert answer[-1] == "m=video 0 RTP/AVP 31"


def test_answer_ipv6_and_no_supported_codec() -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 foo/8000\r\n"
    )
    answer = lines(build_answer(offer, "::1", 1))
    assert "c=IN IP6 ::1" in answer
    assert "m=audio 0 RTP/AVP 96" in answer


def test_offer() -> None:
    offer = lines(build_offer("192.0.2.9", 7))
    assert "m=audio 40000 RTP/AVP 0 8 101" in offer
    assert "c=IN IP4 192.0.2.9" in offer
    check_offer(build_offer("192.0.2.9", 7))


@pytest.mark.parametrize(
    "bad", [b"", b"hello", b"v=0\r\ns=-\r\n", b"v=0\r\nm=audio x RTP/AVP 0\r\n"]
)
def test_bad_offers(bad: bytes) -> None:
    with pytest.raises(SdpError):
        check_offer(bad)


def test_an_offer_sent_again_gets_the_same_answer_with_its_own_origin() -> None:
    # A load test sends one offer in every call: the answer's streams are worked out
    # once (sdp._TAILS), the origin lines each time.  A copy of the bytes, not the same
    # object, as a new datagram would be.
    first = build_answer(SDP_OFFER, "127.0.0.1", 42)
    again = build_answer(bytes(bytearray(SDP_OFFER)), "192.0.2.1", 43)
    assert lines(again)[4:] == lines(first)[4:]
    assert "o=sipresponder 43 43 IN IP4 192.0.2.1" in lines(again)
    assert "c=IN IP4 192.0.2.1" in lines(again)


def test_remembered_answers_are_bounded_and_bad_offers_are_not_kept() -> None:
    from sipresponder.sip import sdp

    for i in range(sdp._TAILS_LIMIT + 10):
        check_offer(SDP_OFFER.replace(b"o=", f"o={i}".encode(), 1))
    assert 0 < len(sdp._TAILS) <= sdp._TAILS_LIMIT
    for _ in range(2):
        with pytest.raises(SdpError):
            check_offer(b"v=0\r\ns=-\r\n")
    assert b"v=0\r\ns=-\r\n" not in sdp._TAILS
    # Nor an offer larger than _TAIL_OFFER_LIMIT: answered, not kept.
    large = SDP_OFFER + b"a=x-pad:" + b"p" * sdp._TAIL_OFFER_LIMIT + b"\r\n"
    assert (
        lines(build_answer(large, "127.0.0.1", 1))[4:]
        == lines(build_answer(SDP_OFFER, "127.0.0.1", 1))[4:]
    )
    assert large not in sdp._TAILS
