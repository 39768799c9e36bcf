"""Prometheus metrics of one server (its own registry: several apps in one process, e.g.
tests, do not share counters)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """Requests, errors and latency per model and endpoint; batch sizes and model time per
    model. ``model`` is "" for requests that name no served model."""

    def __init__(self, max_batch: int) -> None:
        disable_created_metrics()  # the *_created series only double the exposition
        self.registry = CollectorRegistry()
        labels = ["model", "endpoint"]
        self.requests = Counter(
            "tl_requests", "HTTP requests answered.", [*labels, "status"], registry=self.registry
        )
        self.errors = Counter(
            "tl_request_errors", "Requests answered 4xx or 5xx.", labels, registry=self.registry
        )
        self.latency = Histogram(
            "tl_request_latency_seconds",
            "Time from request to response.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "tl_requests_in_flight", "Requests being served.", registry=self.registry
        )
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max(1, max_batch)})
        self.batch_size = Histogram(
            "tl_batch_size",
            "Items per onnxruntime call.",
            ["model"],
            buckets=[s for s in sizes if s <= max(1, max_batch)],
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "tl_model_run_seconds",
            "Time of one onnxruntime call (one batch).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(model, endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(model, endpoint).inc()
        self.latency.labels(model, endpoint).observe(seconds)

    def batch_observer(self, model: str):  # noqa: ANN201 — a (size, seconds) callback
        sizes, seconds = self.batch_size.labels(model), self.model_seconds.labels(model)

        def observe(size: int, elapsed: float) -> None:
            sizes.observe(size)
            seconds.observe(elapsed)

        return observe

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
