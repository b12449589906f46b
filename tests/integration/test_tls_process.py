"""SIP over TLS with the real process: Python's ``ssl`` as the client.

The responder is started with ``--transport udp,tcp,tls`` on free ports.  Calls over TLS
get what they get over TCP, with a SIPS Contact; a ``sips:`` Request-URI is served over
TLS and refused over UDP and TCP (RFC 5630); the certificate is self-signed (its
fingerprint logged) or read from PEM files, whose faults are one line and exit 2; a failed
handshake or plain text on the TLS port is logged once, without a traceback, and the
port keeps serving; mutual TLS and TCP's limits hold.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from baresipconf import write_config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from required import missing
from sipclient import RECV_TIMEOUT, Req, TcpClient, TlsClient, UdpClient
from sipprocs import (
    Responder,
    StartResponder,
    responder_command,
    running_workers,
)

from sipresponder.aio.tls import self_signed

TLS = ("--transport", "udp,tcp,tls")


def _tls(r: Responder) -> tuple[str, int]:
    return (r.host, r.ports["tls"])


@pytest.fixture
def responder(start_responder_with: StartResponder) -> Responder:
    return start_responder_with(*TLS)


def test_listens_on_its_own_port_and_answers(responder: Responder) -> None:
    assert set(responder.ports) == {"udp", "tcp", "tls"}
    assert responder.ports["tls"] != responder.ports["tcp"]
    assert any(re.fullmatch(r"listening tls 127\.0\.0\.1:\d+", x) for x in responder.lines)
    with TlsClient(_tls(responder)) as c:
        ok = c.request(Req("OPTIONS", user="200"), 200)
        assert ok["Via"].startswith("SIP/2.0/TLS ")
        # A second request on the same connection: TLS frames like TCP.
        c.send(Req("INVITE", user="486"))
        c.expect_codes([100, 486])
    assert "/tls -> 100 486" in responder.wait_for_log("/tls -> 100 486")


def test_a_whole_call_over_tls_keeps_the_dialog_on_tls(responder: Responder) -> None:
    port = responder.ports["tls"]
    with TlsClient(_tls(responder)) as c:
        invite = Req("INVITE", uri=f"sips:200@127.0.0.1:{port}")
        c.send(invite)
        c.expect(100)
        ok = c.expect(200)
        # §12.1.1: a SIPS Request-URI draws a SIPS Contact.
        assert ok["Contact"] == f"<sips:sipresponder@127.0.0.1:{port}>"
        c.send(invite.ack_2xx(ok.to_tag))
        c.request(invite.in_dialog("BYE", ok.to_tag, 2), 200)
    log = responder.wait_for_log("BYE")
    assert "violation" not in log


def test_the_self_signed_certificate_is_the_one_logged(responder: Responder) -> None:
    log = responder.wait_for_log("fingerprint")
    m = re.search(r"SHA-256 fingerprint ([0-9A-F:]{95})", log)
    assert m is not None, log
    with TlsClient(_tls(responder)) as c:
        assert isinstance(c.sock, ssl.SSLSocket)
        der = c.sock.getpeercert(binary_form=True)
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert der is not None
    digest = hashlib.sha256(der).hexdigest().upper()
    assert m.group(1).replace(":", "") == digest


def test_sips_is_served_over_tls_and_refused_over_plain_transports(
    responder: Responder,
) -> None:
    uri = f"sips:200@127.0.0.1:{responder.ports['tls']}"
    with TlsClient(_tls(responder)) as c:
        c.request(Req("OPTIONS", uri=uri), 200)
    for client in (UdpClient(responder.addr), TcpClient(responder.addr)):
        with client as c:
            refused = c.request(Req("OPTIONS", uri=uri), 480)
            # RFC 5630 §5.1.2: 480 with warn-code 380.
            assert refused["Warning"] == '380 sipresponder "SIPS Not Allowed"'
            c.request(Req("OPTIONS", user="200"), 200)  # sip: still is


def test_plain_text_on_the_tls_port_is_told_once_and_the_port_serves_on(
    responder: Responder,
) -> None:
    for _ in range(3):
        with TcpClient(_tls(responder)) as c:
            c.send(Req("OPTIONS", user="200"))
            assert c.closed_by_peer(RECV_TIMEOUT)
            assert c.buf == b""  # no SIP answer in the clear
    log = responder.wait_for_log("not TLS")
    assert log.count("not TLS") == 1, log
    assert "Traceback" not in log
    with TlsClient(_tls(responder)) as c:
        c.request(Req("OPTIONS", user="200"), 200)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_a_client_below_tls_1_2_is_refused(responder: Responder) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pytest.skip("this OpenSSL cannot offer TLS 1.1 at all")
    raw = socket.create_connection(_tls(responder), timeout=RECV_TIMEOUT)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        context.wrap_socket(raw).close()
    raw.close()
    log = responder.wait_for_log("TLS from")
    assert "TLS from 127.0.0.1" in log and "Traceback" not in log
    with TlsClient(_tls(responder)) as c:
        c.request(Req("OPTIONS", user="200"), 200)


def _write_pair(folder: Path, name: str, host: str = "127.0.0.1") -> tuple[Path, Path]:
    cert, key = self_signed(host)
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    return cert_path, key_path


def test_given_certificate_is_served_and_verifies(
    start_responder_with: StartResponder, tmp_path: Path
) -> None:
    cert, key = _write_pair(tmp_path, "server")
    r = start_responder_with(*TLS, "--tls-cert", str(cert), "--tls-key", str(key))
    assert "self-signed certificate for" not in r.log()
    with TlsClient(_tls(r), cafile=str(cert)) as c:  # hostname 127.0.0.1 checked too
        c.request(Req("OPTIONS", user="200"), 200)
    # One file holding the certificate and its key serves as well.
    both = tmp_path / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    r2 = start_responder_with(*TLS, "--tls-cert", str(both))
    with TlsClient(_tls(r2), cafile=str(cert)) as c:
        c.request(Req("OPTIONS", user="200"), 200)


def _refused(*args: str) -> str:
    """What the responder says when it refuses to start with ``args``: one line, exit 2."""
    proc = subprocess.run(
        responder_command("127.0.0.1", 0, *TLS, *args),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "listening" not in proc.stdout
    return lines[0]


def test_bad_certificate_files_are_one_line_and_exit_2(tmp_path: Path) -> None:
    cert, key = _write_pair(tmp_path, "a")
    other_cert, other_key = _write_pair(tmp_path, "b")
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    missing = tmp_path / "missing.pem"
    cases = {
        (
            "--tls-cert",
            str(missing),
            "--tls-key",
            str(key),
        ): f"--tls-cert {missing}: cannot read it",
        ("--tls-cert", str(text), "--tls-key", str(key)): f"--tls-cert {text}: no PEM certificate",
        ("--tls-cert", str(cert), "--tls-key", str(text)): f"--tls-key {text}: no PEM private key",
        ("--tls-cert", str(cert)): f"--tls-cert {cert}: no PEM private key in it; give it with",
        (
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(other_key),
        ): f"--tls-key {other_key}: does not match the certificate in {cert}",
        (
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(encrypted),
        ): f"--tls-key {encrypted}: the private key is encrypted",
        (
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--tls-ca",
            str(text),
        ): f"--tls-ca {text}: no PEM certificate",
        ("--tls-verify-client",): "--tls-verify-client: give the authorities",
    }
    for args, expected in cases.items():
        line = _refused(*args)
        assert expected in line, (args, line)
        assert line.startswith("sipresponder: error: ")
    assert other_cert.exists()


def test_tls_flags_without_tls_are_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sipresponder", "--port", "0", "--tls-port", "5999"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "sipresponder: error: --tls-port: tls is not among --transport udp,tcp"
    )


def test_mutual_tls(start_responder_with: StartResponder, tmp_path: Path) -> None:
    server_cert, server_key = _write_pair(tmp_path, "server")
    client_cert, client_key = _write_pair(tmp_path, "client", host="client.invalid")
    r = start_responder_with(
        *TLS,
        *("--tls-cert", str(server_cert), "--tls-key", str(server_key)),
        *("--tls-ca", str(client_cert), "--tls-verify-client"),
    )
    # Without a certificate: refused in the handshake (TLS 1.3 tells the client at its
    # first read), told once.
    with (
        pytest.raises((ssl.SSLError, ConnectionError, AssertionError)),
        TlsClient(_tls(r), cafile=str(server_cert)) as c,
    ):
        c.request(Req("OPTIONS", user="200"), 200)
    assert "no client certificate" in r.wait_for_log("no client certificate")
    # With one the CA signed: served.
    context = ssl.create_default_context(cafile=str(server_cert))
    context.load_cert_chain(str(client_cert), str(client_key))
    with TlsClient(_tls(r), context=context) as c:
        c.request(Req("OPTIONS", user="200"), 200)


def test_tcp_limits_hold_over_tls(start_responder_with: StartResponder) -> None:
    r = start_responder_with(*TLS, "--max-connections-per-source", "1")
    with TlsClient(_tls(r)) as first:
        first.request(Req("OPTIONS", user="200"), 200)
        with (
            pytest.raises((ssl.SSLError, ConnectionError, OSError)),
            TlsClient(_tls(r)) as second,
        ):
            second.request(Req("OPTIONS", user="200"), 200)
        first.request(Req("OPTIONS", user="200"), 200)
    assert "connections_per_source" in r.wait_for_log("connections_per_source") or (
        "per source" in r.log()
    )


def test_rules_match_the_tls_transport(
    start_responder_with: StartResponder, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - match: {method: INVITE, transport: tls}\n    plan: 180-603\n")
    r = start_responder_with(*TLS, "--rules", str(rules))
    with TlsClient(_tls(r)) as c:
        c.send(Req("INVITE", user="200"))
        c.expect_codes([100, 180, 603])
    with TcpClient(r.addr) as c:
        c.send(Req("INVITE", user="486"))
        c.expect_codes([100, 486])


# ------------------------------------------------------------------- real clients


def _baresip(server: Responder, workdir: Path, cafile: Path, dial: str, seconds: int) -> str:
    """baresip 1.0 over TLS, trusting ``cafile``, dialling ``dial``: what it printed."""
    binary = shutil.which("baresip")
    if binary is None:
        missing("baresip is not installed (Debian package baresip-core; make test installs it)")
    conf = workdir / f"baresip-{dial}"
    write_config(conf, f"sip_cafile\t\t{cafile}")
    where = f"{server.host}:{server.ports['tls']}"
    (conf / "accounts").write_text(f"<sip:alice@{where};transport=tls>;regint=0\n")
    proc = subprocess.run(
        [binary, "-f", str(conf), "-e", f"/dial sip:{dial}@{where}", "-t", str(seconds)],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.stdout + proc.stderr


def test_baresip_over_tls_gets_busy_and_answered(
    start_responder_with: StartResponder, tmp_path: Path
) -> None:
    cert, key = _write_pair(tmp_path, "server")
    r = start_responder_with(*TLS, "--tls-cert", str(cert), "--tls-key", str(key))
    said = _baresip(r, tmp_path, cert, "486", 4)
    assert "session closed: 486 Busy Here" in said, said
    said = _baresip(r, tmp_path, cert, "200", 5)
    assert "Call established" in said or "call established" in said, said
    log = r.wait_for_log("BYE sip", timeout=10.0)  # baresip hangs up as it quits
    assert re.search(r"INVITE sip:486@\S+ from 127\.0\.0\.1:\d+/tls -> 100 486", log), log
    assert re.search(r"INVITE sip:200@\S+ from 127\.0\.0\.1:\d+/tls -> 100 200", log), log
    # The 200's Contact says TLS: baresip's BYE came back over it.
    assert re.search(r"BYE sip:sipresponder@\S+;transport=tls from \S+/tls -> 200", log), log
    assert "violation" not in log


def test_workers_share_the_tls_port_and_one_certificate() -> None:
    with running_workers(3, *TLS) as workers:
        assert set(workers.ports) == {"udp", "tcp", "tls"}
        seen = set()
        for _ in range(8):  # the kernel spreads the connections over the two workers
            with TlsClient(("127.0.0.1", workers.ports["tls"])) as c:
                assert isinstance(c.sock, ssl.SSLSocket)
                der = c.sock.getpeercert(binary_form=True)
                assert der is not None
                seen.add(hashlib.sha256(der).hexdigest())
                c.request(Req("OPTIONS", user="200"), 200)
        assert len(seen) == 1  # one certificate, made by the supervisor
    assert workers.code == 0, workers.stderr
    assert workers.stderr.count("SHA-256 fingerprint") == 1, workers.stderr
    assert "Traceback" not in workers.stderr


@pytest.mark.parametrize("transport", ["tls", "ws", "wss"])
def test_a_silent_handshake_is_closed_by_the_message_timeout(
    start_responder_with: StartResponder, transport: str
) -> None:
    """A peer that connects and never completes its handshake (TLS or the WebSocket
    upgrade) is closed after --message-timeout, as a slow TCP peer is."""
    r = start_responder_with(
        *("--transport", f"udp,{transport}", "--message-timeout", "1"),
        *("--tcp-idle-timeout", "60"),
    )
    with socket.create_connection(("127.0.0.1", r.ports[transport]), timeout=5) as s:
        s.sendall(b"\x16\x03\x01" if transport != "ws" else b"GET / HTTP/1.1\r\n")  # a start
        started = time.monotonic()
        assert s.recv(4096) == b""  # closed
        assert 0.5 < time.monotonic() - started < 4.0
    assert "--message-timeout 1 s" in r.wait_for_log("--message-timeout")
