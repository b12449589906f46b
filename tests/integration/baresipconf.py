"""baresip 1.0 (Debian's ``baresip-core``) as a test client: its configuration folder.

``write_config`` writes the ``config`` file every test run of baresip shares — epoll, a
loopback SIP port, G.711 and audio bridged to nothing, two RTP ports — plus the lines a
test adds (``sip_cafile`` for TLS); the test writes its own ``accounts``.  baresip listens
for TLS on its SIP port + 1, so the ports are a run of four found free together.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: Where runs of free ports are looked for: below Linux's ephemeral range (32768 on), so
#: that no client socket the tests open takes one meanwhile, and below the responder's
#: RTP ports (20000 on).
_LOW, _HIGH = 10000, 19000


def free_run(count: int) -> int:
    """The first of ``count`` consecutive ports free for UDP and TCP on loopback now."""
    for _ in range(200):
        first = random.randrange(_LOW, _HIGH - count)
        held: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    sock = socket.socket(socket.AF_INET, kind)
                    held.append(sock)
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return first
    raise AssertionError(f"no run of {count} free ports found in 200 tries")


def write_config(conf: Path, *extra: str) -> None:
    """baresip's ``config`` in the folder ``conf`` (made if missing)."""
    conf.mkdir(parents=True, exist_ok=True)
    sip = free_run(4)  # SIP, TLS (SIP + 1), and the two RTP ports
    rtp = sip + 2
    lines = [
        "poll_method\t\tepoll",
        f"sip_listen\t\t127.0.0.1:{sip}",
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
