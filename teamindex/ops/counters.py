"""The request counters of one server process (prometheus-client), apart from Flask: the hot
path counts its answers here from a worker's first request, before Flask is loaded (cold
start, issue 14). ops/metrics.py serves them at /metrics and counts Flask's answers.

Under `serve --workers N` each worker counts into prometheus-client's multiprocess files
(ops/workers.py names the directory) and a scrape, answered by any worker, sums them all;
the process collector is left out then (it would describe only the worker that answered).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..db import Database

if TYPE_CHECKING:
    from ..upstream import Upstream

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable


class _StorageCollector:
    """Files and bytes as recorded in the database, read at each scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> list[Metric]:
        return []  # registration must not query the database

    def collect(self) -> Iterator[Metric]:
        files, size = self.db.storage_totals()
        yield GaugeMetricFamily(
            "teamindex_storage_bytes", "Bytes of distribution files in the index", value=size
        )
        yield GaugeMetricFamily(
            "teamindex_storage_files", "Distribution files in the index", value=files
        )


class _UpstreamCollector:
    """The proxy's counters (upstream/stats.py) and the file cache's size, at each scrape.
    The size walks the cache directory: one stat per cached file, only when scraped."""

    COUNTERS = (
        ("requests", "Requests sent upstream, by kind (page, file, metadata)", "kind"),
        ("errors", "Upstream failures by kind (page, file, metadata, mismatch)", "kind"),
        ("bytes", "Bytes received from upstream, by kind", "kind"),
        (
            "page",
            "Upstream page lookups answered from the cache (hit), from a stale copy while"
            " upstream fails (stale), or not (miss)",
            "result",
        ),
        ("file", "Upstream file downloads from the cache (hit) or fetched (miss)", "result"),
        ("metadata", "Upstream .metadata from the cache (hit) or fetched (miss)", "result"),
    )

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        counts = self.upstream.stats.snapshot()
        for name, text, label in self.COUNTERS:
            family = CounterMetricFamily(f"teamindex_upstream_{name}", text, labels=[label])
            for (counted, value), amount in sorted(counts.items()):
                if counted == name:
                    family.add_metric([value], amount)
            yield family
        status = self.upstream.files.status()
        yield GaugeMetricFamily(
            "teamindex_upstream_cache_bytes", "Bytes of cached upstream files", value=status.bytes
        )
        yield GaugeMetricFamily(
            "teamindex_upstream_cache_files", "Cached upstream files", value=status.files
        )
        yield GaugeMetricFamily(
            "teamindex_upstream_cache_limit_bytes",
            "The cache's cap (--upstream-cache-size)",
            value=status.limit,
        )


class Metrics:
    """The collectors of one app."""

    def __init__(self, db: Database, upstream: Upstream | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "teamindex_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "teamindex_http_request_duration_seconds",
            "Time to produce a response (body streaming excluded), by route",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.uploads = Counter(
            "teamindex_uploads",
            "Upload requests by status",
            ["status"],
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "teamindex_upload_bytes",
            "Bytes of distribution files received by successful uploads",
            registry=self.registry,
        )
        self.downloads = Counter(
            "teamindex_downloads",
            "Successful file downloads by kind (dist, metadata)",
            ["kind"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "teamindex_auth_failures",
            "Refused credentials (invalid: 401 with credentials sent; forbidden: 403; "
            "throttled: 429)",
            ["reason"],
            registry=self.registry,
        )
        shared = os.environ.get(MULTIPROC_ENV)
        # What a scrape reads: this registry, or every worker's files plus the collectors
        # that read the database (the same from any worker).
        self.exposed = self.registry
        if shared:
            from prometheus_client import multiprocess

            self.exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposed, shared)
        self.exposed.register(_StorageCollector(db))
        if upstream is not None:
            self.exposed.register(_UpstreamCollector(upstream))
        if not shared:
            ProcessCollector(registry=self.registry)

    def count_request(self, rule: str, method: str, status: int, seconds: float | None) -> None:
        """One request and how long it took (the hot path counts its answers here too)."""
        self.requests.labels(rule, method, str(status)).inc()
        if seconds is not None:
            self.duration.labels(rule).observe(seconds)

    def count_download(self, kind: str) -> None:
        """One download answered 200 or 206; kind is "dist" or "metadata"."""
        self.downloads.labels(kind).inc()


def count_in_shared_dir() -> None:
    """Make metrics created from now on count in the multiprocess files of MULTIPROC_ENV,
    whenever prometheus-client was imported (it chooses at import: a worker forked from a
    parent that had imported it would count in its own memory)."""
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
