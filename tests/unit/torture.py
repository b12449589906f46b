"""The RFC 4475 torture messages, for the tests and the fuzz seed corpus.

Each message is a text file in ``data/rfc4475/`` named by the RFC's file name
(``wsinv.txt`` for wsinv.dat), read at import.  The files are written in the RFC's own
notation (§2): ``<allOneLine>`` joins its lines into one, ``<repeat count=N>x</repeat>``
is x N times, ``<hex>..</hex>`` stands for the raw octets (NUL, BEL, DEL, UTF-8, a
trailing SP, the binary S/MIME part of mpart01: the RFC's 342 octets).  ``wire`` turns
that into the bytes on the wire, with CRLF line ends.  The messages are the RFC's.
"""

from __future__ import annotations

import re
from pathlib import Path

#: The messages, one file each, in the notation below.
DATA = Path(__file__).resolve().parent / "data" / "rfc4475"

_ALL_ONE_LINE = re.compile(r"<allOneLine>\n(.*?)\n</allOneLine>", re.S)
_REPEAT = re.compile(r"<repeat count=(\d+)>(.*?)</repeat>", re.S)
_HEX = re.compile(r"<hex>([0-9A-Fa-f]*)</hex>")


def wire(text: str) -> bytes:
    """RFC 4475 §2 notation -> the octets of the message."""
    text = _ALL_ONE_LINE.sub(lambda m: m.group(1).replace("\n", ""), text)
    text = _REPEAT.sub(lambda m: m.group(2) * int(m.group(1)), text)
    text = text.replace("\n", "\r\n")
    out = bytearray()
    for i, part in enumerate(_HEX.split(text)):
        out += bytes.fromhex(part) if i % 2 else part.encode()
    return bytes(out)


#: Every message by the RFC's file name (``wsinv`` for wsinv.dat ...).
ALL: dict[str, bytes] = {
    path.stem: wire(path.read_text("utf-8")) for path in sorted(DATA.glob("*.txt"))
}

# The messages the tests name.  §3.1.1 valid messages:
WSINV = ALL["wsinv"]
INTMETH = ALL["intmeth"]
ESC01 = ALL["esc01"]
#: One datagram holding a REGISTER and, after it, an INVITE that must be ignored.
DBLREQ = ALL["dblreq"]
MPART01 = ALL["mpart01"]
# §3.1.2 invalid messages:
CLERR = ALL["clerr"]
BIGCODE = ALL["bigcode"]
# §3.3 application layer:
INSUF = ALL["insuf"]
BEXT01 = ALL["bext01"]
INVUT = ALL["invut"]
# §3.4 backward compatibility:
INV2543 = ALL["inv2543"]
