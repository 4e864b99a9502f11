"""Prometheus metrics of one server, in the app's own registry (no process-global collectors)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MODES = ("loading", "model", "fallback-model", "retrieval-only")
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Everything /metrics exposes; the server updates these as requests come and go."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "deepkb_http_requests", "HTTP requests by route, method and status.", ["route", "method", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "deepkb_http_request_duration_seconds", "Time until a response (or stream) ended, by route.", ["route"],
            buckets=_LATENCY, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "deepkb_time_to_first_token_seconds", "From request to the first answer or reasoning token.",
            buckets=_LATENCY, registry=r,
        )  # fmt: skip
        self.tokens_per_s = Histogram(
            "deepkb_generation_tokens_per_second", "Generation speed of each answer.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000), registry=r,
        )  # fmt: skip
        self.completion_tokens = Counter("deepkb_completion_tokens", "Tokens generated.", registry=r)
        self.queue_wait = Histogram(
            "deepkb_queue_wait_seconds", "Time a generation waited for a slot.", buckets=_LATENCY, registry=r
        )
        self.queue_depth = Gauge("deepkb_queue_depth", "Requests waiting for a generation slot.", registry=r)
        self.in_flight = Gauge("deepkb_generations_in_flight", "Generations running now.", registry=r)
        self.rejections = Counter(
            "deepkb_queue_rejections", "Requests refused with 429, by reason (full, timeout).", ["reason"], registry=r
        )
        self.cancelled = Counter(
            "deepkb_generations_cancelled", "Generations stopped because the client left.", registry=r
        )
        self.cache_hits = Counter("deepkb_cache_hits", "Answers served from the answer cache.", registry=r)
        self.cache_misses = Counter("deepkb_cache_misses", "Answers that had to be generated.", registry=r)
        self.cache_entries = Gauge("deepkb_cache_entries", "Answers held in the answer cache.", registry=r)
        self.withheld = Counter("deepkb_answers_withheld", "Answers withheld by the content policy.", registry=r)
        self.model_errors = Counter("deepkb_model_errors", "Model load or generation failures.", registry=r)
        self.documents = Gauge("deepkb_documents", "Documents indexed.", registry=r)
        self.chunks = Gauge("deepkb_chunks", "Chunks indexed.", registry=r)
        self.watch_events = Counter(
            "deepkb_watch_events", "Changes synced by the watcher, by action.", ["action"], registry=r
        )
        self.mode = Gauge("deepkb_mode", "1 for the answering mode now active.", ["mode"], registry=r)
        self.ready = Gauge("deepkb_ready", "1 once the server answers requests.", registry=r)
        self.set_mode("loading")

    def set_mode(self, mode: str) -> None:
        for name in MODES:
            self.mode.labels(mode=name).set(1 if name == mode else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
