"""The IANA-registered SIP response codes and their reason phrases.

What belongs here: the table (all 75 codes of the IANA "Response Codes" registry, with the
RFC that defines each) and the lookup of a reason phrase.  Any other code from 100 to 699
is legal on the wire and gets its class's generic phrase (RFC 3261 §8.1.3.2: a UAC treats
an unknown code as the x00 of its class).  Imports nothing from the package.
"""

from __future__ import annotations

#: code -> (reason phrase, defining reference), as registered with IANA.
REGISTERED: dict[int, tuple[str, str]] = {
    100: ("Trying", "RFC 3261"),
    180: ("Ringing", "RFC 3261"),
    181: ("Call Is Being Forwarded", "RFC 3261"),
    182: ("Queued", "RFC 3261"),
    183: ("Session Progress", "RFC 3261"),
    199: ("Early Dialog Terminated", "RFC 6228"),
    200: ("OK", "RFC 3261"),
    202: (
        "Accepted",
        "deprecated in the registry; RFC 3265 originally; deprecated by RFC 6665"
        " (see also RFC 7647 for REFER)",
    ),
    204: ("No Notification", "RFC 5839"),
    300: ("Multiple Choices", "RFC 3261"),
    301: ("Moved Permanently", "RFC 3261"),
    302: ("Moved Temporarily", "RFC 3261"),
    305: ("Use Proxy", "RFC 3261"),
    380: ("Alternative Service", "RFC 3261"),
    400: ("Bad Request", "RFC 3261"),
    401: ("Unauthorized", "RFC 3261"),
    402: ("Payment Required", "RFC 3261"),
    403: ("Forbidden", "RFC 3261"),
    404: ("Not Found", "RFC 3261"),
    405: ("Method Not Allowed", "RFC 3261"),
    406: ("Not Acceptable", "RFC 3261"),
    407: ("Proxy Authentication Required", "RFC 3261"),
    408: ("Request Timeout", "RFC 3261"),
    410: ("Gone", "RFC 3261"),
    412: ("Conditional Request Failed", "RFC 3903"),
    413: ("Request Entity Too Large", "RFC 3261"),
    414: ("Request-URI Too Long", "RFC 3261"),
    415: ("Unsupported Media Type", "RFC 3261"),
    416: ("Unsupported URI Scheme", "RFC 3261"),
    417: ("Unknown Resource-Priority", "RFC 4412"),
    420: ("Bad Extension", "RFC 3261"),
    421: ("Extension Required", "RFC 3261"),
    422: ("Session Interval Too Small", "RFC 4028"),
    423: ("Interval Too Brief", "RFC 3261"),
    424: ("Bad Location Information", "RFC 6442"),
    425: ("Bad Alert Message", "RFC 8876"),
    428: ("Use Identity Header", "RFC 8224 (originally RFC 4474)"),
    429: ("Provide Referrer Identity", "RFC 3892"),
    430: ("Flow Failed", "RFC 5626"),
    433: ("Anonymity Disallowed", "RFC 5079"),
    436: ("Bad Identity Info", 'RFC 8224 (RFC 4474 called it "Bad Identity-Info")'),
    437: ("Unsupported Credential", 'RFC 8224 (RFC 4474 called it "Unsupported Certificate")'),
    438: ("Invalid Identity Header", "RFC 8224 (originally RFC 4474)"),
    439: ("First Hop Lacks Outbound Support", "RFC 5626"),
    440: ("Max-Breadth Exceeded", "RFC 5393"),
    469: ("Bad Info Package", "RFC 6086"),
    470: ("Consent Needed", "RFC 5360"),
    480: ("Temporarily Unavailable", "RFC 3261"),
    481: ("Call/Transaction Does Not Exist", "RFC 3261"),
    482: ("Loop Detected", "RFC 3261"),
    483: ("Too Many Hops", "RFC 3261"),
    484: ("Address Incomplete", "RFC 3261"),
    485: ("Ambiguous", "RFC 3261"),
    486: ("Busy Here", "RFC 3261"),
    487: ("Request Terminated", "RFC 3261"),
    488: ("Not Acceptable Here", "RFC 3261"),
    489: ("Bad Event", "RFC 6665 (originally RFC 3265)"),
    491: ("Request Pending", "RFC 3261"),
    493: ("Undecipherable", "RFC 3261"),
    494: ("Security Agreement Required", "RFC 3329"),
    500: ("Server Internal Error", "RFC 3261"),
    501: ("Not Implemented", "RFC 3261"),
    502: ("Bad Gateway", "RFC 3261"),
    503: ("Service Unavailable", "RFC 3261"),
    504: ("Server Time-out", "RFC 3261"),
    505: ("Version Not Supported", "RFC 3261"),
    513: ("Message Too Large", "RFC 3261"),
    555: ("Push Notification Service Not Supported", "RFC 8599"),
    580: ("Precondition Failure", "RFC 3312"),
    600: ("Busy Everywhere", "RFC 3261"),
    603: ("Decline", "RFC 3261"),
    604: ("Does Not Exist Anywhere", "RFC 3261"),
    606: ("Not Acceptable", "RFC 3261"),
    607: ("Unwanted", "RFC 8197"),
    608: ("Rejected", "RFC 8688"),
}

#: The phrase for a code that is legal but not registered, by class.
GENERIC: dict[int, str] = {
    1: "Provisional",
    2: "Successful",
    3: "Redirection",
    4: "Request Failure",
    5: "Server Failure",
    6: "Global Failure",
}

_REASONS: dict[int, str] = {code: entry[0] for code, entry in REGISTERED.items()}


def is_valid_code(code: int) -> bool:
    """A SIP status code is three digits, 100 to 699 (RFC 3261 §7.2)."""
    return 100 <= code <= 699


def reason_phrase(code: int) -> str:
    """The registered reason phrase, or the generic phrase of the code's class."""
    phrase = _REASONS.get(code)
    if phrase is not None:
        return phrase
    if not is_valid_code(code):
        raise ValueError(f"{code} is not a SIP response code (100-699)")
    return GENERIC[code // 100]
