"""Publishing into one repository (``<category>/<arch>/`` of the repository store).

The order of writes is what keeps mirrors safe, and what makes a crash at any
point harmless:

1. the checked package files (``<category>/<arch>/<file>.apk``);
2. the signed index of the new generation, ``.generations/<n>/APKINDEX.tar.gz``;
3. ``APKINDEX.tar.gz``, the index mirrors and clients read — last, so it never
   names a file that is not there yet;
4. the repository state (``.apkfarm/index.state``), so a restart knows what
   the published index holds;
5. pruning: generations beyond the newest ``keep_generations``, and package
   files that none of the kept generations names any more.

A crash before 3 leaves the previous index in place and the job's message
unacknowledged: it is delivered again and published again (a file already
indexed with the same SHA-256 changes nothing, so nothing is duplicated). A
crash between 3 and 4 is redone the same way; the generation number is
never reused because the next one is counted from the generations that exist.

The state is read once and kept in memory; an update costs the changed
records plus joining the others' text, never a read of the other packages.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from apkfarm.apk.assemble import signature_member
from apkfarm.apk.errors import ApkError, ApkSignatureError
from apkfarm.apk.index import index_content_member, parse_apkindex, version_order
from apkfarm.apk.index_state import (
    FileStamp,
    IndexState,
    StateEntry,
    apply_update,
    plan_changes,
)
from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import verify_raw_index
from apkfarm.apk.segmented_gzip import SegmentCache
from apkfarm.apk.signing import SignatureFile, parse_signature_name, verify_digest
from apkfarm.blobs import BlobNotFound, BlobStore, layout
from apkfarm.errors import ApkfarmError
from apkfarm.services.common.logs import get_logger
from apkfarm.services.indexer.checks import Rejected, StagedJob
from apkfarm.services.indexer.state import (
    RepositoryState,
    StateError,
    decode_repository_state,
    encode_repository_state,
)
from apkfarm.services.indexer.verify import FarmKeyring, VerifiedJob
from apkfarm.services.signer.client import SignerClient

log = get_logger(__name__)

MAX_STATE_BYTES = 512 * 1024 * 1024
MAX_INDEX_BYTES = 256 * 1024 * 1024


class PublishError(ApkfarmError):
    """The repository cannot be published to now (worth retrying, or for an operator)."""


@dataclass(frozen=True)
class Publication:
    """What one ``publish`` left in the repository."""

    category: str
    arch: str
    generation: int
    index_key: str
    # "name-version" of the packages this generation added (or whose bytes it replaced).
    added: tuple[str, ...]
    removed: tuple[str, ...]
    package_count: int
    published_at: float
    # False when every package was already indexed: no new generation was made.
    new_generation: bool


@dataclass
class RepositoryPublisher:
    """The indexer's hold on one repository; ``publish`` calls are serialised."""

    store: BlobStore
    category: str
    arch: str
    state: RepositoryState
    signer: SignerClient
    keyring: FarmKeyring
    description: str = ""
    keep_generations: int = 5
    # The highest generation number whose index object may exist (published or not).
    highest_generation: int = 0
    segments: SegmentCache = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- opening ----------------------------------------------------------

    @classmethod
    async def open(
        cls,
        store: BlobStore,
        category: str,
        arch: str,
        *,
        signer: SignerClient,
        keyring: FarmKeyring,
        description: str = "",
        keep_generations: int = 5,
    ) -> RepositoryPublisher:
        """Load the repository's state (or rebuild it from its published index)."""
        if keep_generations < 1:
            raise ValueError("keep_generations must be at least 1")
        state_key = layout.repository_state_key(category, arch)
        state, listed = await asyncio.to_thread(_read_state_and_generations, store, category, arch)
        if state is None:
            state = await _state_from_published_index(store, category, arch, keyring, listed)
        generations = tuple(sorted(set(state.generations) | set(listed)))
        state = replace(state, generations=generations)
        highest = max((state.generation, *generations), default=0)
        log.info(
            "repository loaded",
            repository=f"{category}/{arch}",
            state=state_key,
            generation=state.generation,
            packages=state.package_count,
        )
        return cls(
            store=store,
            category=category,
            arch=arch,
            state=state,
            signer=signer,
            keyring=keyring,
            description=description,
            keep_generations=keep_generations,
            highest_generation=highest,
        )

    # --- questions before publishing -------------------------------------

    @property
    def index_key(self) -> str:
        return layout.repository_index_key(self.category, self.arch)

    def holds(self, file_name: str, sha256: str) -> bool:
        """True when the current index names ``file_name`` with exactly these bytes."""
        entry = self.state.index.entries.get(file_name)
        return entry is not None and entry.stamp == sha256

    def select(self, jobs: Sequence[StagedJob]) -> dict[int, Rejected]:
        """The jobs (by position) that must not be published: a newer version is indexed or
        comes in the same batch. Equal versions are published; the later job's bytes win."""
        newest: dict[str, tuple[tuple[int, object], str]] = {}

        def consider(name: str, version: str) -> None:
            order = version_order(version)
            if name not in newest or newest[name][0] < order:
                newest[name] = (order, version)

        names = {f.name for job in jobs for f in job.files}
        for entry in self.state.index.entries.values():
            if entry.name in names:
                consider(entry.name, entry.version)
        for job in jobs:
            for staged in job.files:
                consider(staged.name, staged.version)
        rejected: dict[int, Rejected] = {}
        for position, job in enumerate(jobs):
            for staged in job.files:
                order, version = newest[staged.name]
                if order > version_order(staged.version):
                    rejected[position] = Rejected(
                        "superseded",
                        f"{job.label}: {staged.label} is older than {staged.name}-{version}, "
                        f"which {self.category}/{self.arch} holds or is publishing",
                    )
                    break
        return rejected

    # --- publishing -------------------------------------------------------

    async def publish(self, jobs: Sequence[VerifiedJob]) -> Publication:
        """Copy the jobs' packages in, then publish a new generation naming them.

        Returns the current generation unchanged when every package is already
        indexed with the same bytes.
        """
        async with self._lock:
            return await self._publish(jobs)

    async def _publish(self, jobs: Sequence[VerifiedJob]) -> Publication:
        written: dict[str, tuple[StateEntry, Path]] = {}
        for job in jobs:
            for verified in job.files:
                if verified.entry is not None and verified.path is not None:
                    written[verified.staged.file_name] = (verified.entry, verified.path)
        if not written:
            return self._publication((), (), new_generation=False)
        for file_name, (_entry, path) in written.items():
            key = layout.repository_package_key(self.category, self.arch, file_name)
            await asyncio.to_thread(self.store.put_file, key, path)

        old = self.state
        names = {entry.name for entry, _path in written.values()}
        replaced = [
            e.file_name
            for e in old.index.entries.values()
            if e.name in names and e.file_name not in written
        ]
        plan = plan_changes(old.index, written=written, deleted=replaced)
        index = replace(
            apply_update(old.index, plan, (entry for entry, _path in written.values())),
            description=self.description,
        )
        index_bytes = await self._signed_index(index)

        generation = self.highest_generation + 1
        await asyncio.to_thread(
            self.store.put_bytes,
            layout.repository_generation_key(self.category, self.arch, generation),
            index_bytes,
        )
        self.highest_generation = generation
        await asyncio.to_thread(self.store.put_bytes, self.index_key, index_bytes)
        published_at = time.time()

        retired = {name: last for name, last in old.retired.items() if name not in written}
        for name in plan.removed:
            # Every generation before this one may name it (even one lost in a crash).
            retired[name] = generation - 1
        state = RepositoryState(
            index=index,
            generation=generation,
            published_at=published_at,
            generations=tuple(sorted({*old.generations, generation})),
            retired=retired,
        )
        await asyncio.to_thread(
            self.store.put_bytes,
            layout.repository_state_key(self.category, self.arch),
            encode_repository_state(state),
        )
        self.state = state
        await self._prune()
        added = _labels(index.entries, (*plan.added, *plan.changed))
        removed = _labels(old.index.entries, plan.removed)
        return self._publication(added, removed, new_generation=True)

    def _publication(
        self, added: tuple[str, ...], removed: tuple[str, ...], *, new_generation: bool
    ) -> Publication:
        return Publication(
            category=self.category,
            arch=self.arch,
            generation=self.state.generation,
            index_key=self.index_key,
            added=added,
            removed=removed,
            package_count=self.state.package_count,
            published_at=self.state.published_at,
            new_generation=new_generation,
        )

    async def _signed_index(self, index: IndexState) -> bytes:
        """The signer signs the content member; its signatures must verify with the farm's
        keys (the index is not published otherwise)."""
        content = index_content_member(
            self.description,
            index.apkindex(),
            mtime=index.newest_build_time(),
            cache=self.segments,
            # The state knows where its pieces end; no need to cut the text again.
            pieces=index.apkindex_pieces(),
        )
        signatures = await self.signer.sign_index(content, self.category, self.arch)
        where = f"new index of {self.category}/{self.arch}"
        try:
            head = signature_member(signatures)
            keyring = await self.keyring.get()
            try:
                await asyncio.to_thread(check_signatures, signatures, content, keyring, where)
            except ApkSignatureError:
                # A key rotation the cached keyring has not seen yet?
                keyring = await self.keyring.refresh()
                await asyncio.to_thread(check_signatures, signatures, content, keyring, where)
        except ApkError as error:
            raise PublishError(f"{where} not published: the signer's answer: {error}") from None
        return head + content

    async def _prune(self) -> None:
        """Delete generations beyond the kept ones and files only they named (best effort:
        what fails stays in the state and is tried again after the next publication)."""
        state = self.state
        kept = state.generations[-self.keep_generations :]
        oldest_kept = kept[0] if kept else state.generation
        old_generations = [g for g in state.generations if g < oldest_kept]
        unnamed = [
            name
            for name, last in state.retired.items()
            if last < oldest_kept and name not in state.index.entries
        ]
        if not old_generations and not unnamed:
            return
        deleted_generations: set[int] = set()
        deleted_files: set[str] = set()
        try:
            for generation in old_generations:
                key = layout.repository_generation_key(self.category, self.arch, generation)
                await asyncio.to_thread(self.store.delete, key)
                deleted_generations.add(generation)
            for name in unnamed:
                key = layout.repository_package_key(self.category, self.arch, name)
                await asyncio.to_thread(self.store.delete, key)
                deleted_files.add(name)
        except ApkfarmError as error:
            log.warning(
                "pruning stopped; it is tried again after the next publication",
                repository=f"{self.category}/{self.arch}",
                error=str(error),
            )
        # The next state written forgets them; until then a restart deletes them again.
        self.state = replace(
            state,
            generations=tuple(g for g in state.generations if g not in deleted_generations),
            retired={n: last for n, last in state.retired.items() if n not in deleted_files},
        )
        log.info(
            "pruned",
            repository=f"{self.category}/{self.arch}",
            generations=sorted(deleted_generations),
            files=sorted(deleted_files),
        )


def _labels(entries: Mapping[str, StateEntry], file_names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(f"{entries[f].name}-{entries[f].version}" for f in file_names))


def check_signatures(
    signatures: Sequence[SignatureFile], member: bytes, keyring: Keyring, where: str
) -> None:
    """Each signature by a key in ``keyring`` verifies over ``member``, and there is one.

    (What a client checks of the index, without inflating the member we just built.)
    """
    trusted = 0
    for signature in signatures:
        algorithm, key_name = parse_signature_name(signature.name)
        key = keyring.get(key_name)
        if key is None:
            continue
        digest = algorithm.new_hash()
        digest.update(member)
        if not verify_digest(key, algorithm, signature.signature, digest.digest()):
            raise ApkSignatureError(f"{where}: {signature.name} does not match the index")
        trusted += 1
    if not trusted:
        names = ", ".join(s.name for s in signatures)
        raise ApkSignatureError(f"{where}: no signature by a key of the farm ({names})")


def _read_state_and_generations(
    store: BlobStore, category: str, arch: str
) -> tuple[RepositoryState | None, list[int]]:
    prefix = layout.repository_generations_prefix(category, arch)
    listed = [
        number
        for info in store.list(prefix)
        if (number := layout.parse_repository_generation(info.key)) is not None
    ]
    key = layout.repository_state_key(category, arch)
    try:
        data = store.get_bytes(key, max_size=MAX_STATE_BYTES)
    except BlobNotFound:
        return None, listed
    try:
        return decode_repository_state(data, key), listed
    except StateError as error:
        log.warning("repository state unreadable; rebuilding it from the index", error=str(error))
        return None, listed


async def _state_from_published_index(
    store: BlobStore, category: str, arch: str, keyring: FarmKeyring, listed: list[int]
) -> RepositoryState:
    """No usable state: start from what the published index names (verified), or empty."""
    key = layout.repository_index_key(category, arch)
    try:
        data = await asyncio.to_thread(store.get_bytes, key, max_size=MAX_INDEX_BYTES)
    except BlobNotFound:
        return RepositoryState()
    where = f"published index {key}"
    try:
        raw = await asyncio.to_thread(
            verify_raw_index, io.BytesIO(data), await keyring.get(), source=where
        )
        records = parse_apkindex(raw.apkindex, where)
        # The SHA-256 of each file is unknown: a later event for it publishes it again.
        entries = {
            r.filename: StateEntry.from_record(r.filename, FileStamp(r.size, ""), r)
            for r in records
        }
    except ApkError as error:
        raise PublishError(
            f"{category}/{arch}: there is no readable state and {where} does not verify "
            f"({error}); refusing to publish over it — check the repository and the keys"
        ) from None
    log.warning(
        "repository state rebuilt from the published index",
        repository=f"{category}/{arch}",
        packages=len(entries),
    )
    generation = max(listed, default=0)
    return RepositoryState(
        index=IndexState(entries, raw.description), generation=generation, generations=()
    )
