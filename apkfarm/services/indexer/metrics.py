"""The indexer's Prometheus metrics (the default registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from apkfarm.services.indexer.checks import REJECTION_REASONS

INDEX_PACKAGES = Gauge(
    "apkfarm_index_packages", "Packages named by the published index", ["category", "arch"]
)
INDEX_GENERATION = Gauge(
    "apkfarm_index_generation", "Generation number of the published index", ["category", "arch"]
)
INDEX_PUBLISHED = Gauge(
    "apkfarm_index_published_timestamp_seconds",
    "Unix time the published index was written",
    ["category", "arch"],
)
PUBLISH_DURATION = Histogram(
    "apkfarm_index_publish_duration_seconds",
    "Time from taking a batch of one repository to its published index "
    "(download, verification, copies, signing, uploads)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
REJECTED = Counter(
    "apkfarm_index_rejected",
    "Staged jobs refused by the indexer (dead-lettered), by the first failed check",
    ["reason"],
)

# Every reason exists from the start, so dashboards and rate() see zeros, not gaps.
for _reason in REJECTION_REASONS:
    REJECTED.labels(reason=_reason)
