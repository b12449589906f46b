"""A journal's call as a SIPp scenario (``core/replay``), read as text: what varies from
run to run is SIPp's keywords, the messages keep the rest, the responder's answers are
recvs of the right transactions.  (tests/integration/test_replay_process.py runs exports
with the real SIPp.)"""

from __future__ import annotations

import re
import xml.dom.minidom

from sipresponder.core.calls import Call, Entry
from sipresponder.core.replay import PAUSE_FROM, sipp_scenario

CLIENT, SERVER = "127.0.0.1:5070", "127.0.0.1:5060"


def message(first: str, *headers: str, body: str = "") -> bytes:
    return ("\r\n".join([first, *headers]) + "\r\n\r\n" + body).encode()


def request(
    time: float, method: str, cseq: int, branch: str, to_tag: str = "", body: str = "", *extra: str
) -> Entry:
    raw = message(
        f"{method} sip:486@{SERVER} SIP/2.0",
        f"Via: SIP/2.0/UDP {CLIENT};branch={branch};rport",
        "From: <sip:alice@example.com>;tag=abc123",
        f"To: <sip:486@{SERVER}>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: original-call-id",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:alice@{CLIENT};transport=udp>",
        *extra,
        f"Content-Length: {len(body)}",
        body=body,
    )
    return Entry(time, "in", "udp", CLIENT, SERVER, raw, "original-call-id", method, cseq)


def response(time: float, code: int, method: str, cseq: int, to_tag: str = "") -> Entry:
    raw = message(
        f"SIP/2.0 {code} Whatever",
        f"To: <sip:486@{SERVER}>" + (f";tag={to_tag}" if to_tag else ""),
        f"CSeq: {cseq} {method}",
    )
    return Entry(
        time, "out", "udp", SERVER, CLIENT, raw, "original-call-id", method, cseq, status=code
    )


def call(*entries: Entry) -> Call:
    c = Call("original-call-id", entries[0].time, entries[-1].time)
    c.entries.extend(entries)
    return c


SDP = (
    "v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)


def busy() -> Call:
    return call(
        request(1.0, "INVITE", 1, "z9hG4bKaaa", body=SDP),
        response(1.001, 100, "INVITE", 1),
        response(1.002, 180, "INVITE", 1, "srv1"),
        response(1.003, 486, "INVITE", 1, "srv1"),
        request(1.004, "ACK", 1, "z9hG4bKaaa", "srv1"),
    )


def test_the_scenario_is_xml_and_names_nothing_of_the_original_run() -> None:
    text = sipp_scenario(busy())
    xml.dom.minidom.parseString(text)  # well-formed
    scenario = text.partition("<scenario")[2]
    for original in ("original-call-id", "abc123", "z9hG4bKaaa", "srv1", CLIENT, SERVER):
        assert original not in scenario, original
    assert "Call-ID: [call_id]" in scenario
    assert ";tag=[pid]SIPpTag[call_number]" in scenario
    assert "INVITE sip:486@[remote_ip]:[remote_port] SIP/2.0" in scenario
    assert "Contact: <sip:alice@[local_ip]:[local_port];transport=[transport]>" in scenario
    assert scenario.count("Content-Length: [len]") == 2


def test_the_ack_of_a_non_2xx_keeps_the_invites_branch_and_carries_the_tag_read() -> None:
    text = sipp_scenario(busy())
    branches = re.findall(r"branch=(\S+?);rport", text)
    assert branches == ["z9hG4bK-[pid]-[call_number]-b1"] * 2
    assert "To: <sip:486@[remote_ip]:[remote_port]>;tag=[$tag1]" in text
    assert 'assign_to="dummy_tag1,tag1"' in text and '<Reference variables="dummy_tag1"/>' in text


def test_responses_are_recvs_of_their_transaction_provisionals_optional() -> None:
    text = sipp_scenario(busy())
    assert '<send retrans="500" start_txn="t1invite">' in text
    assert '<recv response="100" response_txn="t1invite" optional="true"/>' in text
    assert '<recv response="180" response_txn="t1invite" optional="true">' in text
    assert '<recv response="486" response_txn="t1invite">' in text
    assert '<send ack_txn="t1invite">' in text


def test_an_sdp_offer_gets_sipps_addresses_and_media_port() -> None:
    text = sipp_scenario(busy())
    assert "o=alice 1 2 IN IP[local_ip_type] [local_ip]" in text
    assert "c=IN IP[media_ip_type] [media_ip]" in text
    assert "m=audio [media_port] RTP/AVP 0" in text


def test_the_provisional_the_client_waited_for_is_required() -> None:
    cancelled = call(
        request(1.0, "INVITE", 1, "z9hG4bKaaa"),
        response(1.001, 100, "INVITE", 1),
        response(1.002, 180, "INVITE", 1, "srv1"),
        request(3.0, "CANCEL", 1, "z9hG4bKaaa"),
        response(3.001, 200, "CANCEL", 1, "srv1"),
        response(3.002, 487, "INVITE", 1, "srv1"),
        request(3.003, "ACK", 1, "z9hG4bKaaa", "srv1"),
    )
    text = sipp_scenario(cancelled)
    assert '<recv response="100" response_txn="t1invite" optional="true"/>' in text
    assert '<recv response="180" response_txn="t1invite">' in text  # required
    assert f'<pause milliseconds="{round((3.0 - 1.002) * 1000)}"/>' in text
    assert PAUSE_FROM < 3.0 - 1.002
    assert len(set(re.findall(r"branch=(\S+?);rport", text))) == 1  # INVITE, CANCEL, ACK


def test_a_request_of_the_responder_is_received_and_answered() -> None:
    bye = Entry(
        5.0,
        "out",
        "udp",
        SERVER,
        CLIENT,
        message("BYE sip:alice@127.0.0.1:5070 SIP/2.0", "CSeq: 1 BYE"),
        "original-call-id",
        "BYE",
        1,
    )
    ok = Entry(
        5.01,
        "in",
        "udp",
        CLIENT,
        SERVER,
        message("SIP/2.0 200 OK", "CSeq: 1 BYE"),
        "original-call-id",
        "BYE",
        1,
        status=200,
    )
    text = sipp_scenario(call(*busy().entries[:1], bye, ok))
    assert '<recv request="BYE"/>' in text
    assert (
        "SIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n[last_CSeq:]"
        in text
    )


def test_retransmissions_are_left_out_and_limits_are_said() -> None:
    again = request(1.5, "INVITE", 1, "z9hG4bKaaa", "", "", "Authorization: Digest username=a")
    again.retransmission = True
    authed = request(2.0, "INVITE", 2, "z9hG4bKbbb", "", "", "Authorization: Digest username=a")
    text = sipp_scenario(call(*busy().entries, again, authed))
    assert text.count("INVITE sip:486@") == 2
    assert "digest answers are replayed as they were" in text


def test_a_message_holding_the_end_of_a_cdata_section_stays_well_formed() -> None:
    odd = request(1.0, "OPTIONS", 1, "z9hG4bKccc", "", "", "Subject: ]]> -- odd")
    xml.dom.minidom.parseString(sipp_scenario(call(odd, response(1.1, 200, "OPTIONS", 1, "x"))))
