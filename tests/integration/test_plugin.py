"""The pytest plugin end to end: small test files run by ``pytester`` in a fresh pytest
process, which loads the plugin through its ``pytest11`` entry point as any project would.

The inner tests drive the responder with ``sipclient`` (copied next to them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sipclient import ipv6_loopback

pytest_plugins = ["pytester"]

SIPCLIENT = Path(__file__).with_name("sipclient.py")

#: Shared by the inner test files: an INVITE that gets 486 and is ACKed.
HELPERS = """
from sipclient import Req, client


def busy(sip, transport="udp"):
    req = Req("INVITE", user="486")
    with client(transport, (sip.host, sip.port)) as peer:
        peer.send(req)
        peer.expect(100)
        final = peer.expect(486)
        peer.send(req.ack(final.to_tag))
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory with ``sipclient.py``, the helpers and a quiet ini."""
    (pytester.path / "sipclient.py").write_text(SIPCLIENT.read_text())
    (pytester.path / "helpers.py").write_text(HELPERS)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=60)


def test_fixtures_in_passing_tests(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_calls="""
        import asyncio

        import pytest
        from helpers import busy

        from sipresponder import Responder, assert_call
        from sipresponder.testing.pytest_plugin import assert_no_violations

        SEEN = {}


        def test_busy(sip_responder):
            busy(sip_responder)
            call = sip_responder.wait_for_call(method="INVITE", user="486", acked=True)
            assert_call(call, status=486, codes=[100, 486], acked=True, no_violations=True)
            assert_no_violations(sip_responder)


        def test_busy_over_tcp(sip_responder):
            busy(sip_responder, "tcp")
            assert sip_responder.wait_for_call(acked=True).final_status == 486


        def test_session_first(sip_responder_session):
            SEEN["port"] = sip_responder_session.port
            sip_responder_session.set_rules([{"match": {"user": "486"}, "plan": 603}])
            busy_or_603 = sip_responder_session.uri("486")
            assert busy_or_603.endswith(f":{SEEN['port']}")
            assert sip_responder_session.calls() == []


        def test_session_second_is_reset(sip_responder_session):
            assert sip_responder_session.port == SEEN["port"]
            assert sip_responder_session.rules is None
            busy(sip_responder_session)
            assert len(sip_responder_session.calls()) == 1


        def test_session_third_is_reset(sip_responder_session):
            assert sip_responder_session.calls() == []


        def test_factory(sip_responder_factory):
            ruled = sip_responder_factory([{"match": {"user": "486"}, "plan": 486}])
            udp = sip_responder_factory(transports="udp")
            assert ruled.port != udp.port
            assert [t for t, _, _ in udp.listeners] == ["udp"]
            assert ruled.rules is not None


        @pytest.mark.asyncio
        async def test_async_test_with_the_sync_fixture(sip_responder):
            await asyncio.to_thread(busy, sip_responder)
            call = await asyncio.to_thread(sip_responder.wait_for_call, acked=True)
            assert_call(call, status=486)


        @pytest.mark.asyncio
        async def test_async_responder():
            async with Responder() as sip:
                await asyncio.to_thread(busy, sip)
                assert_call(await sip.wait_for_call(acked=True), status=486)
        """
    )
    result = run(project)
    result.assert_outcomes(passed=8)


def test_failures_show_the_ladder(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_fail="""
        from helpers import busy

        from sipresponder import assert_call


        def test_wrong_status(sip_responder):
            busy(sip_responder)
            call = sip_responder.wait_for_call(user="486", acked=True)
            assert_call(call, status=200, acked=True)


        def test_timeout(sip_responder):
            busy(sip_responder)
            sip_responder.wait_for_call(user="200", timeout=0.2)


        def test_plain_assert(sip_responder_session):
            busy(sip_responder_session)
            assert sip_responder_session.calls() == [], "the client called"


        def test_no_responder():
            assert False, "no responder here"
        """
    )
    result = run(project)
    result.assert_outcomes(failed=4)
    out = result.stdout
    # assert_call: the mismatch, then the ladder; the test's line is the one shown.
    out.fnmatch_lines(
        [
            "*def test_wrong_status(sip_responder):*",
            ">*assert_call(call, status=200, acked=True)",
            "E*AssertionError: call *: final status is 486, expected 200",
            "E*SIP ladder:",
            "E*Call-ID *",
            # (fnmatch: "[[]" is a literal "[")
            "E*+*s  127.0.0.1:* -> responder  INVITE sip:486@127.0.0.1:*  [[]CSeq 1 INVITE]",
            "E*<- responder  100 Trying  [[]CSeq 1 INVITE]",
            "E*<- responder  486 Busy Here  [[]CSeq 1 INVITE]",
            "E*-> responder  ACK sip:486@127.0.0.1:*  [[]CSeq 1 ACK]",
        ]
    )
    # wait_for_call: the timeout names what was awaited and shows what came instead.
    out.fnmatch_lines(
        [
            '>*sip_responder.wait_for_call(user="200", timeout=0.2)',
            "E*TimeoutError: no call matching user='200', with a final response within 0.2 s"
            " at 127.0.0.1:*; 1 call seen:",
            "E*<- responder  486 Busy Here*",
        ]
    )
    # A plain assert: the report section lists the responder's calls.
    out.fnmatch_lines(
        [
            "E*AssertionError: the client called*",
            "*- sipresponder calls at 127.0.0.1:* -*",
            "Call-ID *",
            "*<- responder  486 Busy Here*",
        ]
    )
    text = out.str()
    for helpers in ("assertions", "responder", "threaded"):  # the helpers' frames are hidden
        assert f"sipresponder/testing/{helpers}.py" not in text
    no_responder = text[text.index("_ test_no_responder _") :]
    assert "sipresponder calls" not in no_responder


def test_plugin_stays_idle_without_its_fixtures(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_idle="""
        import sys
        import threading


        def test_idle(request):
            assert request.config.pluginmanager.hasplugin("sipresponder")
            for api in ("assertions", "responder", "threaded"):
                assert f"sipresponder.testing.{api}" not in sys.modules
            assert "sipresponder.aio.server" not in sys.modules
            assert not [t for t in threading.enumerate() if t.name == "sipresponder"]
        """
    )
    run(project).assert_outcomes(passed=1)


def test_command_line_options(project: pytest.Pytester) -> None:
    help_text = run(project, "--help").stdout
    help_text.fnmatch_lines(
        [
            "SIP responder fixtures (sipresponder):",
            "*--sip-responder-host=HOST*",
            "*--sip-responder-transport=LIST*",
        ]
    )
    project.makepyfile(
        test_options="""
        def test_udp_only(sip_responder, sip_responder_session):
            for sip in (sip_responder, sip_responder_session):
                assert sip.transports == ("udp",)
                assert [t for t, _, _ in sip.listeners] == ["udp"]


        def test_host(sip_responder, pytestconfig):
            host = pytestconfig.getoption("sip_responder_host")
            assert sip_responder.host == host
        """
    )
    run(project, "--sip-responder-transport=udp").assert_outcomes(passed=2)
    bad = run(project, "--sip-responder-transport=sctp")
    bad.assert_outcomes(errors=2)
    bad.stdout.fnmatch_lines(["*ConfigError: --transport: unknown transport 'sctp'*"])
    if ipv6_loopback():
        result = run(project, "--sip-responder-host=::1", "-k", "host")
        result.assert_outcomes(passed=1, deselected=1)
