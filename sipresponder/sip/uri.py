"""SIP URIs and addresses, read as text: the URI of a header value, its parts, equality.

What belongs here: the URI inside a From/To/Contact value (``uri_of``, and the loose
check that there is one, ``check_name_addr``), the scheme, user and host of a URI
(RFC 3261 §19.1), URI equality by §19.1.4 (``same_uri``), and the textual addresses a
response or a log writes: ``host:port`` (``hostport``), and IP addresses compared and shown
as ``received`` shows them (``same_ip``, ``plain_ip``).  Strings in, strings out: no
message objects.  Imports only ``grammar`` of the package; nothing here touches sockets,
clocks or randomness.
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import unquote

from .grammar import TOKEN_RE

# --------------------------------------------------------------- name-addr


def check_name_addr(value: str) -> bool:
    """A loose check that a From/To/Contact value holds a URI (``scheme:...``)."""
    if "<" in value:
        start = value.find("<")
        end = value.find(">", start)
        return end > start + 1 and ":" in value[start:end]
    return ":" in value


def uri_of(value: str) -> str:
    """The URI inside a name-addr (``"Bob" <sip:bob@x>;tag=1`` -> ``sip:bob@x``)."""
    start = value.find("<")
    if start >= 0:
        end = value.find(">", start)
        return value[start + 1 : end if end > start else None].strip()
    return value.split(";", 1)[0].strip()


# -------------------------------------------------------------------- URIs


def uri_scheme(uri: str) -> str:
    """The scheme of a URI, lower case (``SIP:x`` -> ``sip``), or ``""``."""
    scheme, colon, _ = uri.partition(":")
    return scheme.lower() if colon and TOKEN_RE.fullmatch(scheme) else ""


def uri_user(uri: str) -> str | None:
    """The user part of a sip/sips URI or the number of a tel URI, percent-decoded.

    ``sip:486@host`` -> ``486``; ``sip:180-2s-486;phone-context=x@host`` -> ``180-2s-486``;
    ``tel:486;phone-context=+1`` -> ``486``; ``sip:host`` -> ``None``.
    """
    scheme, colon, rest = uri.partition(":")
    if not colon:
        return None
    scheme = scheme.lower()
    if scheme == "tel":
        user = rest.split(";", 1)[0]
    elif scheme in ("sip", "sips"):
        at = rest.rfind("@")
        if at < 0:
            return None
        user = rest[:at].split(":", 1)[0].split(";", 1)[0]
    else:
        return None
    return unquote(user) if "%" in user else user


def uri_host(uri: str) -> str | None:
    """The host of a sip/sips URI, without brackets, or ``None``."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        return None
    rest = rest.split("?", 1)[0]
    hostport = rest[rest.rfind("@") + 1 :].split(";", 1)[0]
    if hostport.startswith("["):
        end = hostport.find("]")
        return hostport[1:end] if end > 0 else None
    host = hostport.split(":", 1)[0]
    return host or None


#: URI parameters that make two SIP URIs differ when only one has them (§19.1.4).
_STRICT_PARAMS: Final = frozenset({"user", "ttl", "method", "maddr", "transport"})


def _sip_uri_parts(uri: str) -> tuple[str, str, str, dict[str, str], frozenset[str]] | None:
    """``sip:user@host:port;params?headers`` -> (scheme, userinfo, hostport, params,
    headers) as §19.1.4 compares them, or ``None`` when it is not a sip/sips URI."""
    scheme, colon, rest = uri.strip().partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        return None
    rest, _, headers_text = rest.partition("?")
    at = rest.rfind("@")
    userinfo = unquote(rest[:at]) if at >= 0 else ""  # case-sensitive, escapes decoded
    hostport, _, params_text = rest[at + 1 :].partition(";")
    params: dict[str, str] = {}
    for param in params_text.split(";") if params_text else ():
        name, _, value = param.partition("=")
        params[unquote(name).lower()] = unquote(value).lower()
    headers = frozenset(
        unquote(h.partition("=")[0]).lower() + "=" + unquote(h.partition("=")[2])
        for h in headers_text.split("&")
        if h
    )
    return scheme, userinfo, hostport.lower(), params, headers


def same_uri(a: str, b: str, *, params: bool = True) -> bool:
    """Whether two URIs are equal by RFC 3261 §19.1.4 (sip and sips; others compared as
    text): userinfo case-sensitive, the rest not; a port, or a ``user``, ``ttl``,
    ``method``, ``maddr`` or ``transport`` parameter in one only makes them differ; other
    parameters count only when both have them; headers must all match.  ``params=False``
    asks only whether they name the same resource: scheme, userinfo and host:port."""
    if a == b:
        return True
    pa, pb = _sip_uri_parts(a), _sip_uri_parts(b)
    if pa is None or pb is None:
        return a.strip() == b.strip()
    scheme_a, user_a, host_a, params_a, headers_a = pa
    scheme_b, user_b, host_b, params_b, headers_b = pb
    if (scheme_a, user_a, host_a) != (scheme_b, user_b, host_b):
        return False
    if not params:
        return True
    if headers_a != headers_b:
        return False
    for name in params_a.keys() | params_b.keys():
        if name in params_a and name in params_b:
            if params_a[name] != params_b[name]:
                return False
        elif name in _STRICT_PARAMS:
            return False
    return True


# --------------------------------------------------------------- addresses


def hostport(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (``[::1]:5060``, RFC 3261 §25.1)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def same_ip(a: str, b: str) -> bool:
    """Whether two textual addresses are the same IP (``::ffff:1.2.3.4`` == ``1.2.3.4``)."""
    if a == b:
        return True
    try:
        ia = ipaddress.ip_address(a)
        ib = ipaddress.ip_address(b)
    except ValueError:
        return False
    if isinstance(ia, ipaddress.IPv6Address) and ia.ipv4_mapped is not None:
        ia = ia.ipv4_mapped
    if isinstance(ib, ipaddress.IPv6Address) and ib.ipv4_mapped is not None:
        ib = ib.ipv4_mapped
    return ia == ib


def plain_ip(host: str) -> str:
    """An address as it should appear in ``received``: IPv4-mapped IPv6 shown as IPv4."""
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host
