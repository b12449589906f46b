"""The admin API described in OpenAPI 3.0 (``GET /api/openapi.json``): every path, its
answers and the schemas of what they carry.  Data only; imports ``version``.
"""

from __future__ import annotations

from typing import Any

from ..core.config import TRANSPORTS
from ..version import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _content(_ref("Error"), description)


_UNAUTHORIZED = {"401": _error("a token is set and the request lacks it")}
#: The filter of ``/api/calls`` and ``/api/calls.pcap``.
_CALL_FILTER: list[dict[str, Any]] = [
    {
        "name": "method",
        "in": "query",
        "description": "the call's first method (any case)",
        "schema": {"type": "string"},
    },
    {
        "name": "user",
        "in": "query",
        "description": "the Request-URI user of its first request",
        "schema": {"type": "string"},
    },
    {
        "name": "status",
        "in": "query",
        "description": "the final status of its INVITE (else first request)",
        "schema": {"type": "integer", "minimum": 100, "maximum": 699},
    },
    {
        "name": "since",
        "in": "query",
        "description": "last activity at or after this Unix time (seconds)",
        "schema": {"type": "number"},
    },
    {
        "name": "limit",
        "in": "query",
        "description": "at most this many calls, the newest (still oldest first)",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000000},
    },
]
_CALL_ID: dict[str, Any] = {
    "name": "call_id",
    "in": "path",
    "required": True,
    "description": "the Call-ID, percent-encoded",
    "schema": {"type": "string"},
}
#: A pcap file (libpcap's classic format, raw IP packets).
_PCAP: dict[str, Any] = {
    "description": "a pcap file: each message an IP packet between its addresses",
    "content": {"application/vnd.tcpdump.pcap": {"schema": {"type": "string", "format": "binary"}}},
}
_RULES_OK = {"200": _content(_ref("Rules"), "the rules in use"), **_UNAUTHORIZED}
_SCENARIOS_OK = {
    "200": _content(_ref("Scenarios"), "every scenario and sequence, by key"),
    **_UNAUTHORIZED,
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "sipresponder admin API",
        "version": __version__,
        "description": "The journal, the rules and the metrics of a running sipresponder. "
        'Every error is JSON {"error": ...}. With --admin-token every path but /healthz '
        "needs 'Authorization: Bearer TOKEN'.",
    },
    "security": [{"bearer": []}],
    "paths": {
        "/healthz": {
            "get": {
                "summary": "Liveness: the listeners and the transactions in flight",
                "security": [],
                "responses": {
                    "200": _content(_ref("Health"), "the responder is up"),
                    "503": _content(
                        _ref("Health"), "a graceful stop is draining it: send no new calls"
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {
                    "200": {
                        "description": "sipresponder_requests_total{method}, "
                        "sipresponder_responses_total{method,code}, "
                        "sipresponder_in_flight_transactions, "
                        "sipresponder_absorbers{timer}, "
                        "sipresponder_absorbers_evicted_total{timer}, "
                        "sipresponder_media_sessions, sipresponder_media_opened_total, "
                        "sipresponder_media_refused_total, "
                        "sipresponder_violations_total{rule}, "
                        "sipresponder_parse_errors_total, sipresponder_retransmissions_total, "
                        "sipresponder_resent_total, "
                        "sipresponder_dropped_total, sipresponder_overload_total, "
                        "sipresponder_draining_total, sipresponder_ignored_total{reason}, "
                        "sipresponder_blocked_sources_total, sipresponder_held_total, "
                        "sipresponder_held_bytes_total, sipresponder_verified_sources_total, "
                        "sipresponder_limit_hits_total{limit}, sipresponder_tcp_connections, "
                        "sipresponder_handling_seconds (histogram)",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_UNAUTHORIZED,
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": _content({"type": "object"}, "OpenAPI 3.0"),
                    **_UNAUTHORIZED,
                },
            }
        },
        "/api/calls": {
            "get": {
                "summary": "Calls in the journal, oldest first",
                "parameters": _CALL_FILTER,
                "responses": {
                    "200": _content(
                        {
                            "type": "object",
                            "required": ["calls", "count"],
                            "properties": {
                                "calls": {"type": "array", "items": _ref("Call")},
                                "count": {"type": "integer"},
                            },
                        },
                        "the calls",
                    ),
                    "400": _error("a bad filter; 'parameter' names it"),
                    **_UNAUTHORIZED,
                    "409": _error("the journal is off (--journal-size 0)"),
                },
            }
        },
        "/api/calls/{call_id}": {
            "get": {
                "summary": "One call with its messages and its ladder",
                "parameters": [_CALL_ID],
                "responses": {
                    "200": _content(_ref("CallDetail"), "the call"),
                    **_UNAUTHORIZED,
                    "404": _error("no such call in the journal"),
                    "409": _error("the journal is off (--journal-size 0)"),
                },
            }
        },
        "/api/calls.pcap": {
            "get": {
                "summary": "The calls' messages as a pcap file, for Wireshark or tshark",
                "parameters": _CALL_FILTER,
                "responses": {
                    "200": _PCAP,
                    "400": _error("a bad filter; 'parameter' names it"),
                    **_UNAUTHORIZED,
                    "409": _error("the journal is off (--journal-size 0)"),
                },
            }
        },
        "/api/calls/{call_id}/pcap": {
            "get": {
                "summary": "One call's messages as a pcap file, for Wireshark or tshark",
                "parameters": [_CALL_ID],
                "responses": {
                    "200": _PCAP,
                    **_UNAUTHORIZED,
                    "404": _error("no such call in the journal"),
                    "409": _error("the journal is off (--journal-size 0)"),
                },
            }
        },
        "/api/calls/{call_id}/sipp": {
            "get": {
                "summary": "A SIPp UAC scenario (XML) that replays the call's client side",
                "parameters": [_CALL_ID],
                "responses": {
                    "200": {
                        "description": "the scenario: sipp HOST:PORT -sf call.xml -m 1",
                        "content": {"application/xml": {"schema": {"type": "string"}}},
                    },
                    **_UNAUTHORIZED,
                    "404": _error("no such call in the journal"),
                    "409": _error("the journal is off (--journal-size 0)"),
                },
            }
        },
        "/api/events": {
            "get": {
                "summary": "The calls that change, as server-sent events (the web pages' feed)",
                "description": "Each event 'calls' is JSON: {\"calls\": [Call, ...]} for the "
                'calls changed in the last quarter second, or {"reset": true} when the '
                "journal was cleared. A browser's EventSource cannot send a header: the "
                "token may come as ?token=. A stream that does not keep up is ended.",
                "parameters": [
                    {
                        "name": "token",
                        "in": "query",
                        "description": "the --admin-token, when no Authorization header",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "an endless text/event-stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_UNAUTHORIZED,
                    "503": _error("too many pages open"),
                },
            }
        },
        "/api/journal": {
            "get": {
                "summary": "What the journal holds against its bounds, and what they let go",
                "responses": {
                    "200": _content(_ref("JournalStats"), "the journal's counts"),
                    **_UNAUTHORIZED,
                    "409": _error("the journal is off (--journal-size 0)"),
                },
            },
            "delete": {
                "summary": "Forget every call",
                "responses": {
                    "204": {"description": "cleared"},
                    **_UNAUTHORIZED,
                    "409": _error("the journal is off (--journal-size 0)"),
                },
            },
        },
        "/api/rules": {
            "get": {"summary": "The rules in use", "responses": _RULES_OK},
            "put": {
                "summary": "Replace the rules (new transactions use them; calls in flight "
                "keep their plan)",
                "requestBody": {
                    "required": True,
                    "description": "a rules document, the schema of a rules file",
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "application/yaml": {"schema": {"type": "object"}},
                    },
                },
                "responses": {
                    **_RULES_OK,
                    "400": _content(_ref("RulesError"), "the document was refused"),
                    "413": _error("the body is too large"),
                },
            },
            "delete": {
                "summary": "Back to the rules of --rules FILE (or none)",
                "responses": {
                    **_RULES_OK,
                    "409": _content(_ref("RulesError"), "the file cannot be used now"),
                },
            },
        },
        "/api/scenarios": {
            "get": {
                "summary": "The state of every scenario the rules name, by key, and the "
                "position of every sequence (responses:), by rule and key",
                "responses": _SCENARIOS_OK,
            },
            "delete": {
                "summary": "Every scenario back to 'started', every sequence to its first plan",
                "responses": _SCENARIOS_OK,
            },
        },
        "/api/scenarios/{name}": {
            "put": {
                "summary": "Put a scenario in a state, for one key",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["state"],
                                "properties": {
                                    "state": {"type": "string", "example": "registered"},
                                    "key": {
                                        "type": "string",
                                        "description": "whose state: a From user, "
                                        'host:port, a header\'s value; "" (the default) '
                                        "for a global scenario",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {**_SCENARIOS_OK, "400": _error("the body was refused")},
            },
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
            "RulesError": {
                "type": "object",
                "required": ["error", "rule", "line", "field", "problem"],
                "properties": {
                    "error": {"type": "string"},
                    "rule": {
                        "type": "integer",
                        "nullable": True,
                        "description": "1-based; 0 is the default rule",
                    },
                    "line": {"type": "integer", "nullable": True},
                    "field": {"type": "string", "nullable": True, "example": "plan[1].code"},
                    "problem": {"type": "string"},
                },
            },
            "JournalStats": {
                "type": "object",
                "properties": {
                    "calls": {"type": "integer"},
                    "max_calls": {"type": "integer", "description": "--journal-size"},
                    "bytes": {
                        "type": "integer",
                        "description": "messages and their bookkeeping, as counted",
                    },
                    "max_bytes": {"type": "integer", "description": "--journal-bytes"},
                    "evicted_calls": {
                        "type": "integer",
                        "description": "calls let go for room in calls",
                    },
                    "evicted_for_size": {
                        "type": "integer",
                        "description": "calls let go for room in bytes",
                    },
                    "cut_messages": {
                        "type": "integer",
                        "description": "messages kept cut to their head",
                    },
                    "file": {
                        "type": "object",
                        "nullable": True,
                        "description": "--journal-file, when given",
                        "properties": {
                            "path": {"type": "string"},
                            "bytes": {"type": "integer"},
                            "max_bytes": {"type": "integer", "description": "0: never rotates"},
                            "rotations": {"type": "integer"},
                            "writing": {
                                "type": "boolean",
                                "description": "false after a write error",
                            },
                        },
                    },
                },
            },
            "Health": {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": ["ok", "draining"]},
                    "version": {"type": "string"},
                    "listeners": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "transport": {"type": "string", "enum": list(TRANSPORTS)},
                                "host": {"type": "string"},
                                "port": {"type": "integer"},
                            },
                        },
                    },
                    "in_flight": {"type": "integer"},
                },
            },
            "Rules": {
                "type": "object",
                "properties": {
                    "source": {"type": "string", "nullable": True},
                    "rules": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "one summary line per rule, as --check prints",
                    },
                    "document": {
                        "type": "object",
                        "nullable": True,
                        "description": "the document in use, when known",
                    },
                },
            },
            "Transaction": {
                "type": "object",
                "properties": {
                    "method": {"type": "string"},
                    "cseq": {"type": "integer"},
                    "uri": {"type": "string"},
                    "time": {"type": "number"},
                    "codes": {"type": "array", "items": {"type": "integer"}},
                    "final_status": {"type": "integer", "nullable": True},
                    "acked": {"type": "boolean"},
                    "retransmissions": {"type": "integer"},
                    "cancelled": {"type": "boolean"},
                },
            },
            "Violation": {
                "type": "object",
                "properties": {
                    "time": {"type": "number"},
                    "call_id": {"type": "string"},
                    "rule": {"type": "string", "example": "RFC 3261 §17.1.1.3"},
                    "message": {"type": "string"},
                    "method": {"type": "string"},
                    "cseq": {"type": "integer"},
                },
            },
            "Scenarios": {
                "type": "object",
                "properties": {
                    "scenarios": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "description": "a scenario's state for a key (key null: no "
                            "request has moved it yet), or a sequence's position",
                            "properties": {
                                "name": {"type": "string"},
                                "key": {"type": "string", "nullable": True},
                                "state": {"type": "string"},
                                "rule": {"type": "integer"},
                                "position": {"type": "integer"},
                            },
                        },
                    }
                },
            },
            "FaultNote": {
                "type": "object",
                "description": "Something the responder did wrong on purpose (a rule's "
                "faults) that no message of its own shows",
                "properties": {
                    "time": {"type": "number"},
                    "call_id": {"type": "string"},
                    "kind": {"type": "string", "example": "drop_requests"},
                    "message": {"type": "string"},
                    "method": {"type": "string"},
                    "cseq": {"type": "integer"},
                },
            },
            "Call": {
                "type": "object",
                "properties": {
                    "call_id": {"type": "string"},
                    "method": {"type": "string"},
                    "uri": {"type": "string"},
                    "user": {"type": "string"},
                    "from": {"type": "string", "description": "its first request's From, no tag"},
                    "transport": {"type": "string"},
                    "first": {"type": "number"},
                    "last": {"type": "number"},
                    "final_status": {"type": "integer", "nullable": True},
                    "codes": {"type": "array", "items": {"type": "integer"}},
                    "acked": {"type": "boolean"},
                    "transactions": {"type": "array", "items": _ref("Transaction")},
                    "violations": {"type": "array", "items": _ref("Violation")},
                    "faults": {"type": "array", "items": _ref("FaultNote")},
                    "media": {"type": "array", "items": _ref("MediaStream")},
                },
            },
            "MediaStream": {
                "type": "object",
                "description": "A call's media session and what came on it (docs: Media)",
                "properties": {
                    "mode": {"type": "string"},
                    "port": {"type": "integer"},
                    "codec": {"type": "string"},
                    "payload_type": {"type": "integer"},
                    "telephone_event": {"type": "integer", "nullable": True},
                    "ptime": {"type": "integer"},
                    "direction": {"type": "string"},
                    "sdp_address": {"type": "string"},
                    "client": {"type": "string", "nullable": True},
                    "nat": {"type": "boolean"},
                    "packets_in": {"type": "integer"},
                    "packets_out": {"type": "integer"},
                    "bytes_in": {"type": "integer"},
                    "bytes_out": {"type": "integer"},
                    "first_packet_delay": {"type": "number", "nullable": True},
                    "loss": {"type": "number"},
                    "lost": {"type": "integer"},
                    "jitter_ms": {"type": "number"},
                    "ssrc": {"type": "integer", "nullable": True},
                    "ssrc_changes": {"type": "integer"},
                    "timestamp_errors": {"type": "integer"},
                    "first_marker": {"type": "boolean", "nullable": True},
                    "dtmf": {"type": "string"},
                    "dtmf_events": {"type": "array", "items": {"type": "object"}},
                    "foreign_payload_types": {"type": "object"},
                    "ignored": {"type": "integer"},
                    "after_bye": {"type": "integer"},
                    "ended": {"type": "string"},
                    "note": {"type": "string"},
                },
            },
            "Message": {
                "type": "object",
                "properties": {
                    "time": {"type": "number"},
                    "direction": {"type": "string", "enum": ["in", "out"]},
                    "transport": {"type": "string"},
                    "src": {"type": "string"},
                    "dst": {"type": "string"},
                    "call_id": {"type": "string"},
                    "method": {"type": "string"},
                    "cseq": {"type": "integer"},
                    "summary": {"type": "string"},
                    "status": {"type": "integer"},
                    "uri": {"type": "string"},
                    "branch": {"type": "string"},
                    "retransmission": {"type": "boolean"},
                    "fault": {
                        "type": "string",
                        "description": "what a rule's faults did to it, when they did",
                        "example": "duplicate",
                    },
                    "raw": {"type": "string"},
                },
            },
            "CallDetail": {
                "allOf": [
                    _ref("Call"),
                    {
                        "type": "object",
                        "properties": {
                            "messages": {"type": "array", "items": _ref("Message")},
                            "dropped_messages": {"type": "integer"},
                            "ladder": {"type": "string"},
                        },
                    },
                ]
            },
        },
    },
}
