"""The fetcher's Prometheus metrics (the default registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

FETCH_BYTES = Counter(
    "apkfarm_fetch_bytes",
    "Bytes received from source hosts, including transfers restarted or refused later",
)
FETCHES = Counter(
    "apkfarm_fetches",
    "Fetch requests by result: downloaded, deduplicated (already stored), mismatch, failed",
    ["result"],
)
FETCH_DURATION = Histogram(
    "apkfarm_fetch_duration_seconds",
    "Time one fetch request took, from validation to the stored object",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
FETCH_RETRIES = Counter(
    "apkfarm_fetch_retries",
    "Requests repeated within one fetch: retry (connection error, 5xx), "
    "resume (Range honoured) or restart (Range not honoured)",
    ["reason"],
)

RESULTS = ("downloaded", "deduplicated", "mismatch", "failed")
RETRY_REASONS = ("retry", "resume", "restart")

# Every label value exists from the start, so dashboards and rate() see zeros, not gaps.
for _result in RESULTS:
    FETCHES.labels(result=_result)
for _reason in RETRY_REASONS:
    FETCH_RETRIES.labels(reason=_reason)
