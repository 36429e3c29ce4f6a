"""The fetcher: template sources into the content-addressed source cache.

Modules, in the order a fetch runs through them:

- ``sites``: ``$(GNU_SITE)``-style macros in source URLs (pure; the scheduler may use it);
- ``source``: the request (``SourceSpec``), its validation, ``FetchError``;
- ``download``: one URL into a file — limits, redirects, retries, resume, per-host slots;
- ``core``: ``SourceFetcher`` — dedupe by SHA-256, verify, store with ``put_if_absent``;
- ``events`` and ``consumer``: the ``fetch`` queue and ``fetch.done``/``fetch.failed``;
- ``service`` and ``main``: gRPC ``Fetch``, health, and the ``apkfarm-fetcher`` process.

The embedded single-process mode uses ``SourceFetcher`` and ``FetchConsumer``
with a ``MemoryBus`` and a ``LocalBlobStore`` (and ``allow_file_urls=True``);
nothing of that needs gRPC.
"""
