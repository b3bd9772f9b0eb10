"""Prometheus metrics for one signoff process, in a registry of its own (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from approvals.machine import Status
from approvals.model import ApprovalRequest
from approvals.store import SqlStore

LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class Metrics:
    """The counters the service updates, and the text the ``/metrics`` endpoint serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "signoff_requests",
            "Requests entering each status (pending on creation, then their final status).",
            ["status"],
            registry=self.registry,
        )
        self.decision_latency = Histogram(
            "signoff_decision_latency_seconds",
            "Time from creation to a final state.",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "signoff_outbox_depth",
            "Outbox rows by state (pending rows are waiting to be delivered).",
            ["state"],
            registry=self.registry,
        )
        self.long_polls_waiting = Gauge(
            "signoff_long_polls_waiting",
            "Agents' long-polls in this process waiting for a request to become final.",
            registry=self.registry,
        )
        self.deliveries = Counter(
            "signoff_deliveries",
            "Delivery attempts by platform and result (sent, retry, dead).",
            ["platform", "result"],
            registry=self.registry,
        )

    def on_change(self, request: ApprovalRequest) -> None:
        """Service listener: count creations and final states."""
        if request.status is Status.PENDING and request.version == 1:
            self.requests.labels("pending").inc()
        elif request.status.is_final:
            if request.decision is not None and request.decision.by.startswith("policy:"):
                self.requests.labels("pending").inc()  # created and decided by policy at once
            self.requests.labels(request.status.value).inc()
            if request.decided_at is not None:
                latency = (request.decided_at - request.created_at).total_seconds()
                self.decision_latency.labels(request.status.value).observe(latency)

    def on_delivery(self, platform: str, result: str) -> None:
        self.deliveries.labels(platform, result).inc()

    async def render(self, store: SqlStore) -> bytes:
        async with store.read() as reader:
            counts = await reader.outbox_counts()
        for state in ("pending", "sent", "dead"):
            self.outbox_depth.labels(state).set(counts.get(state, 0))
        return generate_latest(self.registry)
