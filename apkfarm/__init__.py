"""apkfarm: a build farm for apk-based Linux distributions.

The package is laid out domain first: ``version``, ``templates``, ``graph`` and
``apk`` are plain Python that know nothing of gRPC, RabbitMQ or S3; ``bus``,
``blobs`` and ``services`` adapt them to the farm's transports.
"""

__version__ = "0.1.0"
