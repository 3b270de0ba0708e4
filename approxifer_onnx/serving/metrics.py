"""Prometheus metrics of the prediction server, kept in a registry of their own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..session import RunReport

__all__ = ["ServingMetrics"]

# Request latency buckets in seconds, from 1 ms to 30 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServingMetrics:
    """The server's metrics, exposed at ``/metrics`` in the Prometheus text format.

    Parameters
    ----------
    model_name : str
        Value of the ``model`` label.
    registry : CollectorRegistry, optional
        Where the metrics live; a new registry by default, so that two apps in one process
        (as in tests) never share counters.
    """

    def __init__(self, model_name: str, registry: CollectorRegistry | None = None):
        self.model_name = model_name
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "approxifer_requests", "Inference requests completed, by HTTP status code.",
            ["model", "code"], registry=self.registry,
        )
        self.request_latency = Histogram(
            "approxifer_request_latency_seconds", "Time from a request's arrival to its response.",
            ["model"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.inputs = Counter(
            "approxifer_inputs", "Inputs completed, by how they were decoded (exact or approximate).",
            ["model", "coding"], registry=self.registry,
        )
        self.batches = Counter(
            "approxifer_batches", "Coded calls sent to the workers, by outcome (ok or failed).",
            ["model", "outcome"], registry=self.registry,
        )
        self.batch_latency = Histogram(
            "approxifer_batch_latency_seconds", "Duration of one coded call.",
            ["model"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.stragglers = Counter(
            "approxifer_stragglers", "Worker results missing from a coded call, by worker and kind "
            "(late or failed).",
            ["model", "worker", "kind"], registry=self.registry,
        )
        self.suspected = Counter(
            "approxifer_suspected_workers", "Worker results dropped as wrong by the error locator.",
            ["model", "worker"], registry=self.registry,
        )
        self.queue_depth = Gauge(
            "approxifer_queue_depth", "Inputs queued and not yet sent to the workers.",
            ["model"], registry=self.registry,
        )

    def observe_request(self, status: int, seconds: float) -> None:
        """Count one completed request and its latency."""
        self.requests.labels(self.model_name, str(status)).inc()
        self.request_latency.labels(self.model_name).observe(seconds)

    def observe_inputs(self, exact: int, approximate: int) -> None:
        """Count the inputs of one completed request by how they were decoded."""
        self.inputs.labels(self.model_name, "exact").inc(exact)
        self.inputs.labels(self.model_name, "approximate").inc(approximate)

    def observe_batch(self, report: RunReport | None, seconds: float) -> None:
        """Count one coded call; `report` is None when the call failed."""
        self.batch_latency.labels(self.model_name).observe(seconds)
        if report is None:
            self.batches.labels(self.model_name, "failed").inc()
            return
        self.batches.labels(self.model_name, "ok").inc()
        if not report.groups:
            return
        group = report.groups[0]  # every group of a call has the same workers
        for worker in group.late:
            self.stragglers.labels(self.model_name, str(worker), "late").inc()
        for worker in group.failed:
            self.stragglers.labels(self.model_name, str(worker), "failed").inc()
        for worker in group.suspected:
            self.suspected.labels(self.model_name, str(worker)).inc()

    def set_queue_depth(self, inputs: int) -> None:
        """Set the number of queued inputs."""
        self.queue_depth.labels(self.model_name).set(inputs)
