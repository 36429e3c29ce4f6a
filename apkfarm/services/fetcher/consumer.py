"""The fetcher's bus side: jobs from the ``fetch`` queue, outcomes as events.

Each job ends in exactly one event once it is settled: ``fetch.done`` when
the source is in the cache (downloaded now or already there), ``fetch.failed``
when it cannot be (checksum mismatch, 404, too large, invalid request, or a
transient failure on the job's last delivery). The job is acknowledged only
after its event was published (the bus waits for the broker's confirm). A
transient failure (network, 5xx, blob store) before the last delivery asks the
bus to deliver the job again later, with a delay that doubles per attempt.

No gRPC here: the embedded mode runs this consumer on a ``MemoryBus``.
"""

from __future__ import annotations

from apkfarm.bus import Bus, Delivery, RetryLater, Subscription, names
from apkfarm.services.common.logs import get_logger
from apkfarm.services.fetcher.core import SourceFetcher
from apkfarm.services.fetcher.events import EventPublisher, spec_from_proto
from apkfarm.services.fetcher.source import FetchError
from apkfarm.v1 import bus_pb2

log = get_logger(__name__)

MAX_RETRY_DELAY = 600.0


class FetchConsumer:
    """Handles ``FetchJob`` messages with ``fetcher``, at most ``prefetch`` at a time."""

    def __init__(
        self,
        bus: Bus,
        fetcher: SourceFetcher,
        events: EventPublisher,
        *,
        prefetch: int = 4,
        retry_delay: float = 30.0,
    ) -> None:
        self.bus = bus
        self.fetcher = fetcher
        self.events = events
        self.prefetch = prefetch
        self.retry_delay = retry_delay
        self.subscription: Subscription[bus_pb2.FetchJob] | None = None

    async def start(self) -> None:
        self.subscription = await self.bus.consume(
            names.FETCH_QUEUE, bus_pb2.FetchJob, self.handle, prefetch=self.prefetch
        )

    async def stop(self, grace: float) -> None:
        """Take no new jobs; let running fetches finish for ``grace`` seconds, then hand them back."""
        if self.subscription is not None:
            await self.subscription.stop(grace)

    def _delay(self, attempt: int) -> float:
        return float(min(self.retry_delay * 2 ** (attempt - 1), MAX_RETRY_DELAY))

    async def handle(self, delivery: Delivery[bus_pb2.FetchJob]) -> None:
        job = delivery.message
        spec = spec_from_proto(job.source)
        fields = {
            "message_id": delivery.message_id,
            "attempt": delivery.attempt,
            "pkgname": job.template.pkgname,
            "filename": spec.filename,
        }
        try:
            result = await self.fetcher.fetch(spec)
        except FetchError as exc:
            if exc.transient and not delivery.last_attempt:
                raise RetryLater(str(exc), delay=self._delay(delivery.attempt)) from exc
            error = str(exc)
            if exc.transient:
                error += f" (gave up after {delivery.attempt} attempts)"
            await self.events.failed(job.source, error, job.template)
            log.info("fetch job failed", error=error, **fields)
            return
        except Exception as exc:
            # A bug or an unforeseen failure: retried like a transient one, reported at the end.
            log.exception("fetch job crashed", **fields)
            reason = f"{spec.label}: internal error: {type(exc).__name__}: {exc}"
            if not delivery.last_attempt:
                raise RetryLater(reason, delay=self._delay(delivery.attempt)) from exc
            await self.events.failed(job.source, reason, job.template)
            return
        await self.events.done(job.source, result)
        log.info("fetch job done", already_present=result.already_present, **fields)
