"""asyncio glue of SIP over TLS (RFC 3261 §26.2.1): the server's certificate and context,
and the handshake of every accepted connection.

What belongs here: ``server_context`` (the certificate and key from PEM files, or a
self-signed certificate made at start; TLS 1.2 at least; mutual TLS against a CA file),
``self_signed``, ``fingerprint``, ``self_signed_line`` and ``write_pems`` (shared with
the workers' supervisor), and ``TlsSession``, the TLS of one accepted
``TcpConnection``, in memory: the connection hands it what it reads and writes, so the
handshake runs before any byte reaches the framer, and a failed one is closed, counted and
logged once a minute per source without a traceback (asyncio's own TLS says nothing of
it outside debug mode, and starts reading before a protocol could take over).  A bad file
is a ``ConfigError`` naming the flag, the file and the problem.  No protocol decision:
past the handshake the connection is TCP's, limits and all.  Imports ``transport``,
``guard`` and ``config``, and ``cryptography`` for the certificates.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..core.config import Config
from ..core.guard import Guard
from ..errors import ConfigError
from .transport import TcpConnection

log = logging.getLogger(__name__)

#: How long the self-signed certificate is valid: a test run, or a year of them.
SELF_SIGNED_DAYS: Final = 365

#: OpenSSL's reasons for a handshake that failed, in words a tester acts on.
_REASONS: Final = {
    "WRONG_VERSION_NUMBER": "not TLS (plain text on the TLS port?)",
    "HTTP_REQUEST": "not TLS: an HTTP request",
    "UNSUPPORTED_PROTOCOL": "the client offers no TLS version from 1.2 on",
    "NO_SHARED_CIPHER": "no cipher in common",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no client certificate (--tls-verify-client)",
    "CERTIFICATE_VERIFY_FAILED": "its certificate is not signed by --tls-ca",
}


@dataclass(frozen=True, slots=True)
class TlsIdentity:
    """The server's TLS context and the certificate it presents."""

    context: ssl.SSLContext
    #: The certificate, PEM (a client of a self-signed one trusts exactly this).
    certificate: bytes
    #: SHA-256 of the certificate's DER, ``AB:CD:...``.
    fingerprint: str
    #: Made at start (no ``--tls-cert``).
    self_signed: bool


def server_context(config: Config) -> TlsIdentity:
    """The context of the TLS listener, from ``--tls-cert``/``--tls-key`` or a certificate
    made now; raises ``ConfigError`` for a file that cannot serve."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    if config.tls_cert is None:
        certificate, key = self_signed(config.host)
        _load_pems(context, certificate, key)
        made = True
    else:
        certificate = _check_certificate(config.tls_cert)
        key_flag, key_path = (
            ("--tls-key", config.tls_key) if config.tls_key else ("--tls-cert", config.tls_cert)
        )
        _check_key(key_flag, key_path)
        try:
            context.load_cert_chain(config.tls_cert, config.tls_key)
        except ssl.SSLError as exc:
            problem = (
                f"does not match the certificate in {config.tls_cert}"
                if "KEY_VALUES_MISMATCH" in str(exc)
                else f"cannot serve with it ({exc.reason or exc})"
            )
            raise ConfigError(f"{key_flag} {key_path}: {problem}") from None
        made = False
    if config.tls_ca:
        try:
            context.load_verify_locations(cafile=config.tls_ca)
        except OSError as exc:
            raise ConfigError(f"--tls-ca {config.tls_ca}: {_file_problem(exc)}") from None
        # With --tls-ca alone a certificate is asked for and checked when one is given.
        context.verify_mode = ssl.CERT_REQUIRED if config.tls_verify_client else ssl.CERT_OPTIONAL
    return TlsIdentity(context, certificate, fingerprint(certificate), made)


def self_signed(host: str, now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """A certificate (PEM) and its P-256 key (PEM) for ``host``, ``localhost`` and the
    loopback addresses (a wildcard host adds this machine's name), signed by itself."""
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    addresses = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    common = host
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if host != "localhost":
            names.insert(0, x509.DNSName(host))
    else:
        if ip.is_unspecified:
            common = socket.gethostname()
            if common != "localhost":
                names.insert(0, x509.DNSName(common))
        elif ip not in addresses:
            addresses.insert(0, ip)
    names.extend(x509.IPAddress(a) for a in addresses)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sipresponder (self-signed)"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # Its own authority: a client trusts it by naming this very file as its CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Either end's: a test's client certificate is made the same way.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def fingerprint(certificate_pem: bytes) -> str:
    """SHA-256 of the first certificate's DER, as ``AB:CD:...`` (what browsers show)."""
    der = x509.load_pem_x509_certificate(certificate_pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def self_signed_line(host: str, certificate: bytes) -> str:
    """What is logged of a certificate made at start (by the server, or the workers'
    supervisor): its host and its fingerprint, for a client to pin."""
    return (
        f"TLS: no --tls-cert, so a self-signed certificate for {host}; "
        f"SHA-256 fingerprint {fingerprint(certificate)}"
    )


def write_pems(folder: str, certificate: bytes, key: bytes) -> tuple[str, str]:
    """The certificate and its key as new files ``cert.pem`` and ``key.pem`` in
    ``folder``, readable by this user alone: their paths."""
    paths = []
    for name, data in (("cert.pem", certificate), ("key.pem", key)):
        path = os.path.join(folder, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        paths.append(path)
    return paths[0], paths[1]


def _load_pems(context: ssl.SSLContext, certificate: bytes, key: bytes) -> None:
    """``load_cert_chain`` reads files only: the PEMs go through a private directory that
    is gone again before this returns."""
    with tempfile.TemporaryDirectory(prefix="sipresponder-tls-") as folder:
        context.load_cert_chain(*write_pems(folder, certificate, key))


def _read(flag: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {_file_problem(exc)}") from None


def _file_problem(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"no PEM certificate in it ({exc.reason or exc})"
    return f"cannot read it: {exc.strerror or exc}"


def _check_certificate(path: str) -> bytes:
    """The file's first certificate, PEM; ``ConfigError`` when it holds none."""
    data = _read("--tls-cert", path)
    try:
        first = x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        raise ConfigError(f"--tls-cert {path}: no PEM certificate in it") from None
    expires = first.not_valid_after_utc
    if expires < datetime.datetime.now(datetime.UTC):
        log.warning("--tls-cert %s: the certificate expired on %s", path, expires.date())
    return first.public_bytes(serialization.Encoding.PEM)


def _check_key(flag: str, path: str) -> None:
    """``ConfigError`` unless the file holds an unencrypted PEM private key."""
    data = _read(flag, path)
    if b"PRIVATE KEY-----" not in data:
        hint = "; give it with --tls-key" if flag == "--tls-cert" else ""
        raise ConfigError(f"{flag} {path}: no PEM private key in it{hint}")
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"{flag} {path}: the private key is encrypted") from None
    except ValueError as exc:
        raise ConfigError(f"{flag} {path}: not a usable private key ({exc})") from None


class TlsSessions:
    """Makes the TLS session of each accepted connection (``TcpConnection.secure``)."""

    def __init__(self, context: ssl.SSLContext, guard: Guard) -> None:
        self.context = context
        self.guard = guard

    def __call__(self, conn: TcpConnection) -> TlsSession:
        return TlsSession(self.context, conn, self)

    def failed(self, conn: TcpConnection, exc: Exception) -> None:
        """Count and tell a failed handshake (once a minute per source)."""
        guard = self.guard
        guard.stats["tls_failed"] += 1
        if conn.flow is not None:
            why = describe(exc).replace("%", "%%")
            now = conn.driver.loop.time()
            guard.tell("tls", conn.flow.remote[0], now, f"TLS from %s: {why}")


class TlsSession:
    """One connection's TLS, in memory (an ``ssl.SSLObject`` over two ``MemoryBIO``).

    The bytes read go in through ``received``, which gives back the plaintext they
    complete — the handshake first: nothing reaches the framer before it is done.  The
    plaintext written comes out of ``wrap`` as records.  What OpenSSL sends by itself (the
    handshake, an alert, TLS 1.3 tickets) goes straight to the connection's transport.
    Bounded: the incoming buffer holds at most one record short of its end (16 KiB).
    """

    __slots__ = ("conn", "incoming", "obj", "outgoing", "owner", "ready")

    def __init__(self, context: ssl.SSLContext, conn: TcpConnection, owner: TlsSessions) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.conn = conn
        self.owner = owner
        self.ready = False

    def received(self, data: bytes) -> bytes:
        """The plaintext that ``data`` completes (b"" while the handshake goes on)."""
        self.incoming.write(data)
        obj = self.obj
        try:
            if not self.ready:
                try:
                    obj.do_handshake()
                except ssl.SSLWantReadError:
                    self._flush()
                    return b""
                self.ready = True
            chunks: list[bytes] = []
            while True:
                try:
                    chunk = obj.read(65536)
                except ssl.SSLWantReadError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        except ssl.SSLZeroReturnError:  # the peer's close_notify: ours, then close
            self._close()
            return b""
        except ssl.SSLError as exc:
            if not self.ready:
                self.owner.failed(self.conn, exc)
            self._close()
            return b""
        self._flush()
        return b"".join(chunks)

    def wrap(self, data: bytes) -> bytes:
        """``data`` as TLS records (with whatever OpenSSL had waiting before them)."""
        if not self.ready:
            return b""  # nothing is answered before the handshake: no message came
        self.obj.write(data)
        return self.outgoing.read()

    def _flush(self) -> None:
        out = self.outgoing.read()
        transport = self.conn.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out)

    def close(self) -> None:
        """Our close_notify, then close (the server stops)."""
        self._close()

    def _close(self) -> None:
        """Send what OpenSSL has (an alert, a close_notify), then close."""
        with contextlib.suppress(ssl.SSLError):
            if self.ready:
                self.obj.unwrap()
        self._flush()
        transport = self.conn.transport
        if transport is not None:
            transport.close()


def describe(exc: BaseException) -> str:
    """A failed handshake in one line."""
    reason = getattr(exc, "reason", None) or ""
    return "handshake failed: " + _REASONS.get(reason, reason or str(exc) or type(exc).__name__)
