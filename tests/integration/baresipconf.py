"""baresip 1.0 (Debian's ``baresip-core``) as a test client: its configuration folder.

``write_config`` writes the ``config`` file every test run of baresip shares — epoll, a
free loopback SIP port, G.711 and audio bridged to nothing, two RTP ports — plus the
lines a test adds (``sip_cafile`` for TLS); the test writes its own ``accounts``.
"""

from __future__ import annotations

from pathlib import Path

from sipprocs import free_port


def write_config(conf: Path, *extra: str) -> None:
    """baresip's ``config`` in the folder ``conf`` (made if missing)."""
    conf.mkdir(parents=True, exist_ok=True)
    rtp = free_port()
    lines = [
        "poll_method\t\tepoll",
        f"sip_listen\t\t127.0.0.1:{free_port()}",
        *extra,
        "net_interface\t\t127.0.0.1",
        "module_path\t\t/usr/lib/baresip/modules",
        "module\t\t\tg711.so",
        "module\t\t\taufile.so",
        "module\t\t\taubridge.so",
        "module\t\t\tmenu.so",
        "module\t\t\taccount.so",
        "audio_player\t\taubridge,nil",
        "audio_alert\t\taubridge,nil",
        "audio_source\t\taubridge,nil",
        f"rtp_ports\t\t{rtp}-{rtp + 1}",
    ]
    (conf / "config").write_text("\n".join(lines) + "\n")
