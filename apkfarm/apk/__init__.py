"""The apk v2 format: packages, signatures, signed indexes and keys.

Everything here is plain Python over byte streams: it does not know whether
bytes come from a file, a pipe, a download or an object store. One concern
per module, in the order data flows:

- ``tar``            deterministic POSIX/pax tar headers, streaming bounded reader
- ``gzip_members``   gzip members written and read one by one, with limits
- ``pkginfo``        the ``.PKGINFO`` control file
- ``package``        the package writer (unsigned: needs no key)
- ``signing``        the ``Signer`` protocol and a local-key signer
- ``keys``           key generation, key names and the trusted ``Keyring``
- ``assemble``       signature member + control + data into a ``.apk``
- ``reader``         the streaming verifier for packages and indexes
- ``extract``        safe extraction of a verified package into a directory
- ``index``          ``APKINDEX`` records, rendering and the signed index
- ``segmented_gzip`` the index compressed in cached pieces (fast incremental updates)
- ``index_state``    incremental index state (pure functions over records)
- ``repository``     a repository directory on disk: the file-system edge
"""
