"""The admin API's Prometheus metrics: collectors that read the counters of the endpoint,
the guard and the journal at scrape time, so nothing is counted twice and an unscraped
responder pays nothing.  Imports ``endpoint``, ``guard`` and ``server`` for their types.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..aio.server import Server
from ..core.endpoint import Endpoint
from ..core.guard import LIMITS, Guard


class EndpointCollector(Collector):
    """Reads the endpoint's counters at scrape time: nothing is counted twice."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def collect(self) -> Iterator[Metric]:
        ep = self.endpoint
        requests = CounterMetricFamily(
            "sipresponder_requests",
            "SIP requests received (retransmissions included), by method",
            labels=["method"],
        )
        for method, n in sorted(ep.recorder.requests_by_method.items()):
            requests.add_metric([method], n)
        yield requests
        responses = CounterMetricFamily(
            "sipresponder_responses",
            "SIP responses built by a request's plan (not retransmissions), by method and code",
            labels=["method", "code"],
        )
        for (method, code), n in sorted(ep.recorder.responses_by_code.items()):
            responses.add_metric([method, str(code)], n)
        yield responses
        yield GaugeMetricFamily(
            "sipresponder_in_flight_transactions",
            "Server transactions that may still send something (--max-transactions)",
            value=len(ep.table.transactions),
        )
        yield GaugeMetricFamily(
            "sipresponder_transaction_bytes",
            "What those transactions are counted to hold (--max-transaction-bytes)",
            value=ep.table.transaction_bytes,
        )
        absorbing = GaugeMetricFamily(
            "sipresponder_absorbers",
            "Ended INVITE transactions kept as a bare key to absorb retransmissions, by "
            "timer: I (ACKed non-2xx, RFC 3261 §17.2.1), L (ACKed 2xx, RFC 6026 §8.7)",
            labels=["timer"],
        )
        evicted = CounterMetricFamily(
            "sipresponder_absorbers_evicted",
            "Absorber keys let go before their timer because the table was full "
            "(--max-absorbers), by timer",
            labels=["timer"],
        )
        for timer, table in (("I", ep.table.confirmed), ("L", ep.table.acked)):
            absorbing.add_metric([timer], len(table))
            evicted.add_metric([timer], table.evicted)
        yield absorbing
        yield evicted
        media = ep.media
        if media is not None:
            sessions = media.table
            yield GaugeMetricFamily(
                "sipresponder_media_sessions",
                "Media sessions open or lingering after their call (--max-media-sessions)",
                value=len(sessions),
            )
            for key, help_text in (
                ("opened", "Media sessions opened for answered calls"),
                ("refused", "Answered calls that got no media session: none or no port free"),
            ):
                yield CounterMetricFamily(
                    f"sipresponder_media_{key}", help_text, value=sessions.stats[key]
                )
        violations = CounterMetricFamily(
            "sipresponder_violations",
            "Client violations of an RFC, by the rule broken",
            labels=["rule"],
        )
        for rule, n in sorted(ep.verdicts.by_rule.items()):
            violations.add_metric([rule], n)
        yield violations
        for name, key, help_text in (
            ("parse_errors", "parse_errors", "Messages that could not be accepted as requests"),
            ("retransmissions", "retransmissions", "Retransmitted requests received"),
            (
                "resent",
                "resent",
                "Final responses resent on a timer: Timer G, or a 2xx until its ACK",
            ),
            ("dropped", "dropped", "Messages dropped without an answer"),
            ("overload", "overload", "New requests answered 503 while overloaded"),
            ("draining", "draining", "New requests answered 503 during a graceful stop"),
        ):
            yield CounterMetricFamily(f"sipresponder_{name}", help_text, value=ep.stats[key])


class JournalCollector(Collector):
    """The journal's bounds and what they let go, and ``--journal-file``'s size."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        journal = self.server.journal
        if journal is not None:
            stats = journal.stats()
            yield GaugeMetricFamily(
                "sipresponder_journal_calls", "Calls held in the journal", value=stats["calls"]
            )
            yield GaugeMetricFamily(
                "sipresponder_journal_bytes",
                "Bytes the journal holds, messages and bookkeeping (bound: --journal-bytes)",
                value=stats["bytes"],
            )
            yield GaugeMetricFamily(
                "sipresponder_journal_max_bytes", "--journal-bytes", value=stats["max_bytes"]
            )
            evicted = CounterMetricFamily(
                "sipresponder_journal_evicted_calls",
                "Calls let go from the journal before the rest, by the bound that needed "
                "room: calls (--journal-size) or bytes (--journal-bytes)",
                labels=["bound"],
            )
            evicted.add_metric(["calls"], stats["evicted_calls"])
            evicted.add_metric(["bytes"], stats["evicted_for_size"])
            yield evicted
            yield CounterMetricFamily(
                "sipresponder_journal_cut_messages",
                "Messages too large for their share of --journal-bytes, kept cut to their head",
                value=stats["cut_messages"],
            )
        out = self.server.journal_file
        if out is not None:
            yield GaugeMetricFamily(
                "sipresponder_journal_file_bytes",
                "Size of --journal-file (it rotates at --journal-file-max)",
                value=out.bytes,
            )
            yield CounterMetricFamily(
                "sipresponder_journal_file_rotations",
                "Times --journal-file was rotated to FILE.1",
                value=out.rotations,
            )


class GuardCollector(Collector):
    """The guard's counters (--allow, --rate-limit, anti-amplification) at scrape time."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def collect(self) -> Iterator[Metric]:
        stats = self.guard.stats
        ignored = CounterMetricFamily(
            "sipresponder_ignored",
            "Messages ignored unanswered, by why: not_allowed (outside --allow; TCP "
            "connections too) or rate_limited (their source over --rate-limit)",
            labels=["reason"],
        )
        for reason in ("not_allowed", "rate_limited"):
            ignored.add_metric([reason], stats[reason])
        yield ignored
        for name, key, help_text in (
            ("blocked_sources", "blocked", "Times a source went over --rate-limit"),
            ("held", "held", "UDP responses not sent to an unverified source"),
            ("held_bytes", "held_bytes", "Bytes of the UDP responses held back"),
            ("verified_sources", "verified", "Sources verified (ACK with our To tag, TCP)"),
            ("tls_handshake_failures", "tls_failed", "TLS connections closed: handshake failed"),
        ):
            yield CounterMetricFamily(f"sipresponder_{name}", help_text, value=stats[key])
        hits = CounterMetricFamily(
            "sipresponder_limit_hits",
            "Limits hit, by limit: " + "; ".join(f"{k}: {v}" for k, v in LIMITS.items()),
            labels=["limit"],
        )
        for limit, n in self.guard.limit_hits.items():
            hits.add_metric([limit], n)
        yield hits
        yield GaugeMetricFamily(
            "sipresponder_tcp_connections",
            "TCP connections open",
            value=self.guard.connections,
        )
