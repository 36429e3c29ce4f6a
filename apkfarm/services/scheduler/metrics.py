"""The scheduler's metrics: it sees every build's outcome, so it exports the farm-wide ones.

Builder pods may live for one job (KEDA ScaledJob), so build counters live
here, fed by the builders' events, rather than on the builders.
"""

from prometheus_client import Counter, Gauge, Histogram

BUILDS = Counter("apkfarm_builds_total", "Finished builds by arch and result", ["arch", "result"])
BUILD_DURATION = Histogram(
    "apkfarm_build_duration_seconds",
    "Wall time of builds as the builders measured it",
    ["arch"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
QUEUE_DEPTH = Gauge("apkfarm_queue_depth", "Messages ready in a farm queue", ["queue"])
BUILDS_BY_STATE = Gauge(
    "apkfarm_scheduler_builds", "Builds the scheduler tracks, by arch and state", ["arch", "state"]
)
