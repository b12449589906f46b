"""URIs: their user and host parts (RFC 3261 §19.1), and URI equality (§19.1.4)."""

from __future__ import annotations

import pytest

from sipresponder.sip.uri import same_uri, uri_host, uri_user


@pytest.mark.parametrize(
    ("uri", "user", "host"),
    [
        ("sip:486@127.0.0.1", "486", "127.0.0.1"),
        ("sip:180-2s-486@[::1]:5060;transport=tcp", "180-2s-486", "::1"),
        ("sips:alice:secret@example.com", "alice", "example.com"),
        ("sip:486;phone-context=x@host", "486", "host"),
        ("tel:486;phone-context=+1", "486", None),
        ("sip:example.com", None, "example.com"),
        ("sip:%34%38%36@h", "486", "h"),
        ("http://x", None, None),
    ],
)
def test_uri_user_and_host(uri: str, user: str | None, host: str | None) -> None:
    assert uri_user(uri) == user
    assert uri_host(uri) == host


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # RFC 3261 §19.1.4's equal pairs.
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
        ("SIP:bob@127.0.0.1", "sip:bob@127.0.0.1"),
    ],
)
def test_same_uri_by_section_19_1_4(a: str, b: str) -> None:
    assert same_uri(a, b) and same_uri(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # RFC 3261 §19.1.4's unequal pairs.
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:alice@127.0.0.1", "sips:alice@127.0.0.1"),
        ("sip:alice@127.0.0.1", "tel:+15551234"),
    ],
)
def test_different_uris_by_section_19_1_4(a: str, b: str) -> None:
    assert not same_uri(a, b) and not same_uri(b, a)


def test_same_resource_leaves_parameters_aside() -> None:
    """What Digest's uri check asks (RFC 2617 §3.2.2.5): pyVoIP answers a challenge to
    ``REGISTER sip:host`` with ``uri="sip:host;transport=UDP"``."""
    assert same_uri("sip:127.0.0.1;transport=UDP", "sip:127.0.0.1", params=False)
    assert same_uri("sip:a@h;lr?x=1", "SIP:a@H", params=False)
    assert not same_uri("sip:127.0.0.1:5060", "sip:127.0.0.1", params=False)
    assert not same_uri("sip:a@h", "sip:b@h", params=False)
    assert not same_uri("sip:127.0.0.1;transport=UDP", "sip:127.0.0.1")
