"""The command line's flags of the secure transport: ``--tls-port``, ``--tls-cert``,
``--tls-key``, ``--tls-ca`` and ``--tls-verify-client``.

What belongs here: ``add_tls_arguments`` (the flags, in a group of their own in
``--help``) and ``tls_fields`` (the ``Config`` fields they set).  ``cli`` calls both; the
checks of what the flags name are ``Config.validate``'s and ``aio.tls``'s.  Imports
nothing of the project.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "TLS (with tls in --transport)",
        "SIP over TLS, 1.2 at least (RFC 3261 §26.2.1); sips: Request-URIs are served "
        "over it, and refused with 480 over the other transports (RFC 5630).",
    )
    group.add_argument(
        "--tls-port",
        type=int,
        default=None,
        metavar="PORT",
        help="port for TLS (default 5061; a free one with --port 0)",
    )
    group.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate, its chain after it (default: a self-signed one made at start "
        "for --host and loopback; its SHA-256 fingerprint is logged)",
    )
    group.add_argument(
        "--tls-key",
        metavar="FILE",
        help="PEM private key of --tls-cert (default: in the --tls-cert file)",
    )
    group.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="PEM authorities that client certificates are checked against",
    )
    group.add_argument(
        "--tls-verify-client",
        action="store_true",
        help="mutual TLS: refuse a client without a certificate signed by --tls-ca",
    )


def tls_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Config`` fields the TLS flags set."""
    return {
        "tls_port": args.tls_port,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_ca": args.tls_ca,
        "tls_verify_client": args.tls_verify_client,
    }
