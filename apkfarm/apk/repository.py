"""A repository directory on disk: list packages, read the new ones, write the index atomically.

This is the file-system edge of ``index_state``: the state lives beside the
packages in ``.apkfarm-index.state``, and the updates since it was written in
``.apkfarm-index.journal`` (appended to, so that adding one package to a large
repository does not rewrite the whole state; folded into a new state file
every ``_JOURNAL_MAX_BATCHES`` updates). ``APKINDEX.tar.gz`` and the state
are written to a temporary file and renamed into place, so a reader never
sees a half-written index and a failure leaves the previous index and state
as they were; a journal batch cut short by a crash is noticed and ignored.
Packages are read in worker processes when there are many.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import functools
import multiprocessing
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from apkfarm.apk.errors import ApkError, ApkFormatError
from apkfarm.apk.index import IndexRecord, build_index
from apkfarm.apk.index_state import (
    FileStamp,
    IndexState,
    Journal,
    StateChanges,
    StateEntry,
    UpdatePlan,
    apply_changes,
    apply_update,
    decode_journal,
    decode_state,
    encode_changes,
    encode_state,
    journal_header,
    plan_changes,
    plan_update,
    state_identity,
)
from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import verify_package
from apkfarm.apk.segmented_gzip import decode_cache, encode_cache
from apkfarm.apk.signing import Signer

INDEX_NAME = "APKINDEX.tar.gz"
STATE_NAME = ".apkfarm-index.state"
JOURNAL_NAME = ".apkfarm-index.journal"  # updates since the state file was written
# The journal is folded into a new state file after this many updates (replaying it
# costs a little on every load), and an update changing more packages than this
# writes a new state file at once.
_JOURNAL_MAX_BATCHES = 64
_JOURNAL_MAX_CHANGES = 64
SEGMENTS_NAME = ".apkfarm-index.segments"  # compressed index pieces, a pure cache
_PARALLEL_FROM = 256  # below this, starting worker processes costs more than it saves
_MAX_ERRORS_SHOWN = 20

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IndexUpdate:
    """What ``update_repository`` did."""

    index_path: Path
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int
    reread: int
    packages: int
    wrote_index: bool
    state_was_reset: bool  # the state file was missing or unreadable: everything was read


def list_packages(directory: Path) -> dict[str, FileStamp]:
    """Every ``*.apk`` regular file in ``directory`` with its size and mtime stamp."""
    listing: dict[str, FileStamp] = {}
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # One stat per file, relative to the directory's fd (no path building). It is
        # most of the cost of a scan, so the loop keeps its lookups local.
        lstat_at = os.lstat  # (a little cheaper than stat(follow_symlinks=False))
        is_regular = stat.S_ISREG
        new_stamp = _new_stamp
        for name in os.listdir(fd):  # noqa: PTH208 - listing an fd, not a path
            if name.endswith(".apk"):
                try:
                    st = lstat_at(name, dir_fd=fd)
                except FileNotFoundError:  # deleted since the listing: not listed
                    continue
                if is_regular(st.st_mode):
                    listing[name] = new_stamp((st.st_size, str(st.st_mtime_ns)))
    finally:
        os.close(fd)
    return listing


# tuple.__new__ bound to FileStamp: NamedTuple's own __new__ is a Python function,
# which would be a good part of listing 10,000 files.
_new_stamp = functools.partial(tuple.__new__, FileStamp)


def read_package_entry(path: Path, keyring: Keyring | None) -> StateEntry:
    """Verify one package (signature, control, datahash) and make its state entry.

    The stamp comes from the open file, so it describes exactly what was read.
    The file name must be ``<pkgname>-<pkgver>.apk``: apk fetches that name.
    """
    try:
        with path.open("rb") as stream:
            st = os.fstat(stream.fileno())
            contents = verify_package(stream, keyring, source=path.name, full_data=False)
    except OSError as error:
        raise ApkError(f"{path.name}: cannot read ({error.strerror})") from None
    record = IndexRecord.from_package(contents, st.st_size)
    if record.filename != path.name:
        raise ApkFormatError(
            f"{path.name}: file name does not match the package inside "
            f"(apk would fetch {record.filename})"
        )
    return StateEntry.from_record(path.name, FileStamp(st.st_size, str(st.st_mtime_ns)), record)


# Worker-process globals, set once per worker by _init_worker.
_worker_keyring: Keyring | None = None


def _init_worker(keys_pem: dict[str, bytes] | None) -> None:
    global _worker_keyring  # noqa: PLW0603 - one keyring per worker process
    _worker_keyring = None if keys_pem is None else Keyring.from_pem(keys_pem)


def _read_in_worker(path: Path) -> StateEntry | str:
    try:
        return read_package_entry(path, _worker_keyring)
    except ApkError as error:
        return str(error)


def read_packages(
    directory: Path,
    file_names: Sequence[str],
    keyring: Keyring | None,
    *,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> list[StateEntry]:
    """Read many packages (in parallel when many); every failure is reported together."""
    results: list[StateEntry] = []
    errors: list[str] = []
    total = len(file_names)
    paths = [directory / name for name in file_names]
    workers = jobs or os.cpu_count() or 1
    if total >= _PARALLEL_FROM and workers > 1:
        keys_pem = None if keyring is None else keyring.to_pem()
        # fork starts workers fastest, but forking a process that runs other
        # threads can deadlock the child; then pay for a fork server instead.
        method = "fork" if threading.active_count() == 1 else "forkserver"
        context = multiprocessing.get_context(method)
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(keys_pem,)
        ) as pool:
            chunk = max(16, min(256, total // (workers * 8) or 1))
            for done, outcome in enumerate(pool.map(_read_in_worker, paths, chunksize=chunk), 1):
                if isinstance(outcome, str):
                    errors.append(outcome)
                else:
                    results.append(outcome)
                if progress is not None and (done % 64 == 0 or done == total):
                    progress(done, total)
    else:
        for done, path in enumerate(paths, 1):
            try:
                results.append(read_package_entry(path, keyring))
            except ApkError as error:
                errors.append(str(error))
            if progress is not None:
                progress(done, total)
    if errors:
        shown = "\n  ".join(errors[:_MAX_ERRORS_SHOWN])
        more = len(errors) - _MAX_ERRORS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise ApkError(
            f"{directory}: {len(errors)} package(s) failed verification; "
            f"the index was not changed:\n  {shown}{tail}"
        )
    return results


@dataclass(frozen=True)
class SavedState:
    """A directory's index state as saved: the state file with its journal applied."""

    state: IndexState
    # The state file's identity when its journal can take more updates; None when the
    # next update must write a new state file (old format, journal torn or missing).
    journal_base: str | None
    journal_batches: int


def load_state(directory: Path) -> SavedState | None:
    """The saved state, or None when it is missing or unreadable (then everything is read)."""
    path = directory / STATE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    journal_path = directory / JOURNAL_NAME
    try:
        state = decode_state(data, str(path))
        base = state_identity(data)
        journal = Journal((), intact=False)
        if base is not None:
            with contextlib.suppress(FileNotFoundError):  # then the next update writes one
                journal = decode_journal(journal_path.read_bytes(), base, str(journal_path))
        if journal.changes:
            state = apply_changes(state, journal.changes)
    except ApkFormatError:
        return None
    return SavedState(state, base if journal.intact else None, len(journal.changes))


def append_durably(path: Path, data: bytes) -> None:
    """Append ``data`` to the existing file ``path`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``.

    ``durable=False`` skips the fsync, for caches whose loss costs only time.
    """
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.chmod(temp_name, 0o644)  # noqa: PTH101 - mkstemp made it 0600
        Path(temp_name).replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


class Repository:
    """One repository directory whose index state is kept in memory between updates.

    ``refresh()`` scans the directory (what the CLI does); ``packages_changed()``
    takes the file names from events instead (what the indexer service does),
    so a warm process neither lists the directory nor decodes the state again.
    """

    def __init__(
        self,
        directory: Path,
        *,
        signers: Sequence[Signer],
        keyring: Keyring | None,
        description: str = "",
        jobs: int | None = None,
    ) -> None:
        if not directory.is_dir():
            raise ApkError(f"{directory}: not a directory")
        self.directory = directory
        self.signers = list(signers)
        self.keyring = keyring
        self.description = description
        self.jobs = jobs
        saved = load_state(directory)
        self.state_was_reset = saved is None
        self.state = saved.state if saved is not None else IndexState()
        self._journal_base = saved.journal_base if saved is not None else None
        self._journal_batches = saved.journal_batches if saved is not None else 0
        try:
            self.segments = decode_cache((directory / SEGMENTS_NAME).read_bytes())
        except FileNotFoundError:
            self.segments = {}

    @property
    def index_path(self) -> Path:
        return self.directory / INDEX_NAME

    def refresh(self, *, verify_all: bool = False, progress: Progress | None = None) -> IndexUpdate:
        """Scan the directory and index what is new, changed or gone."""
        plan = plan_update(self.state, list_packages(self.directory), verify_all=verify_all)
        return self._apply(plan, force=verify_all, progress=progress)

    def packages_changed(
        self,
        *,
        written: Sequence[str] = (),
        deleted: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> IndexUpdate:
        """Index packages known to be written or deleted, without scanning the directory."""
        plan = plan_changes(self.state, written=written, deleted=deleted)
        return self._apply(plan, force=False, progress=progress)

    def _apply(self, plan: UpdatePlan, *, force: bool, progress: Progress | None) -> IndexUpdate:
        read = read_packages(
            self.directory, plan.to_read, self.keyring, progress=progress, jobs=self.jobs
        )
        new_state = replace(apply_update(self.state, plan, read), description=self.description)
        must_write = (
            plan.changes_anything
            or force
            or self.state_was_reset
            or self.state.description != self.description
            or not self.index_path.exists()
        )
        if must_write:
            index_bytes = build_index(
                new_state.apkindex(),
                self.description,
                self.signers,
                mtime=new_state.newest_build_time(),
                cache=self.segments,
                pieces=new_state.apkindex_pieces(),
            )
            # Index first: if writing the state fails, the next run only rereads.
            write_atomically(self.index_path, index_bytes)
            changes = StateChanges(plan.removed, tuple(read), self.description)
            if force or not self._journal(changes):
                self._write_state(new_state)
            write_atomically(
                self.directory / SEGMENTS_NAME, encode_cache(self.segments), durable=False
            )
        update = IndexUpdate(
            index_path=self.index_path,
            added=plan.added,
            changed=plan.changed,
            removed=plan.removed,
            unchanged=plan.unchanged,
            reread=len(plan.to_read),
            packages=len(new_state.entries),
            wrote_index=must_write,
            state_was_reset=self.state_was_reset,
        )
        self.state = new_state
        self.state_was_reset = False
        return update

    def _journal(self, changes: StateChanges) -> bool:
        """Append ``changes`` to the journal; False when a new state file must be written."""
        if (
            self._journal_base is None
            or self._journal_batches >= _JOURNAL_MAX_BATCHES
            or len(changes.removed) + len(changes.written) > _JOURNAL_MAX_CHANGES
        ):
            return False
        base = self._journal_base
        self._journal_base = None  # until the batch is wholly written: a torn one ends it
        try:
            append_durably(self.directory / JOURNAL_NAME, encode_changes(changes))
        except FileNotFoundError:  # the journal went away since it was read
            return False
        self._journal_base = base
        self._journal_batches += 1
        return True

    def _write_state(self, state: IndexState) -> None:
        """A new state file, then an empty journal that follows it (in this order: a
        crash between leaves the old journal, which names the old state file)."""
        data = encode_state(state)
        base = state_identity(data)
        write_atomically(self.directory / STATE_NAME, data)
        write_atomically(self.directory / JOURNAL_NAME, journal_header(base or ""))
        self._journal_base = base
        self._journal_batches = 0


LOCK_NAME = ".apkfarm-index.lock"


@contextlib.contextmanager
def repository_lock(
    directory: Path, *, waiting: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the directory's index lock: two updates at once would lose one's changes.

    ``waiting`` is called once if another process holds the lock, before this
    one waits for it.
    """
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_repository(
    directory: Path,
    *,
    signers: Sequence[Signer],
    keyring: Keyring | None,
    description: str = "",
    verify_all: bool = False,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> IndexUpdate:
    """Bring ``directory``'s ``APKINDEX.tar.gz`` up to date with the packages in it.

    New and changed packages are verified against ``keyring`` (None: not
    checked) before they are indexed; any failure leaves index and state
    untouched. The index is rewritten when packages changed, when it is
    missing, when ``verify_all`` is set, or when the description changes.
    """
    repository = Repository(
        directory, signers=signers, keyring=keyring, description=description, jobs=jobs
    )
    return repository.refresh(verify_all=verify_all, progress=progress)
