"""The command line's flags of the transports with ports of their own: TLS
(``--tls-port``, ``--tls-cert``, ``--tls-key``, ``--tls-ca``, ``--tls-verify-client``)
and WebSocket (``--ws-port``, ``--wss-port``, ``--ws-path``, ``--ws-origin``).

What belongs here: ``add_transport_arguments`` (the flags, in groups of their own in
``--help``) and ``transport_fields`` (the ``Config`` fields they set).  ``cli`` calls
both; the checks of what the flags name are ``Config.validate``'s, ``aio.tls``'s and
``aio.ws``'s.  Imports nothing of the project.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_transport_arguments(parser: argparse.ArgumentParser) -> None:
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
    web = parser.add_argument_group(
        "WebSocket (with ws or wss in --transport)",
        "SIP over WebSocket (RFC 7118): one SIP message per WebSocket message; wss is over "
        "TLS, with the TLS flags' certificate.",
    )
    web.add_argument(
        "--ws-port",
        type=int,
        default=None,
        metavar="PORT",
        help="port for ws (default 5066; a free one with --port 0)",
    )
    web.add_argument(
        "--wss-port",
        type=int,
        default=None,
        metavar="PORT",
        help="port for wss (default 7443; a free one with --port 0)",
    )
    web.add_argument(
        "--ws-path",
        default="/",
        metavar="PATH",
        help="the path of the WebSocket upgrade (default %(default)s); others get 404",
    )
    web.add_argument(
        "--ws-origin",
        action="append",
        metavar="ORIGIN",
        help="an Origin allowed to connect, like https://app.example.com (repeat it; "
        "default: any when listening on loopback, else none but clients that send none)",
    )


def transport_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Config`` fields these flags set."""
    return {
        "ws_port": args.ws_port,
        "wss_port": args.wss_port,
        "ws_path": args.ws_path,
        "ws_origins": tuple(args.ws_origin) if args.ws_origin else None,
        "tls_port": args.tls_port,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_ca": args.tls_ca,
        "tls_verify_client": args.tls_verify_client,
    }
