"""Loading a whole ports tree for one build context: scan, evaluate, apply rules.

One bad template never stops the others: the result lists the templates
that loaded, the errors (a template cbuild would refuse, a broken symlink)
and the exclusions (valid templates that may not build for this context).

``TreeLoader`` is for long-lived callers (the scheduler): it keeps the tree
scanner, the evaluation cache and warm workers, so loading again after an
edit stats the tree, evaluates only the changed templates and reuses
everything else.

A cold load (nothing known yet) overlaps what it can: the sandbox is
prepared in a thread while the tree is listed and read, every category's
pool of workers starts at once, sized by its share of the templates, the
categories are read interleaved so that each pool has work from the start,
and results are checked against cbuild's rules as they stream in.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apkfarm.profiles import BuildContext, resolve_context
from apkfarm.templates.cache import EvaluationCache, context_digest, evaluation_key
from apkfarm.templates.evaluator import (
    EvaluationRequest,
    EvaluatorSettings,
    TemplateEvaluator,
    worker_version,
)
from apkfarm.templates.model import Template, TemplateIssue
from apkfarm.templates.rules import LoadPolicy, RuleOutcome, apply_rules
from apkfarm.templates.tree import CategoryListing, TemplateFile, TreeScanner, TreeSnapshot

__all__ = ["LoadResult", "LoadStats", "TreeLoader", "load_tree"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LoadStats:
    templates: int  # template.py files found
    evaluated: int  # sent to a worker this time
    cached: int  # answered from the evaluation cache
    seconds: float


@dataclass
class LoadResult:
    """A tree loaded for one build context."""

    context: BuildContext
    policy: LoadPolicy
    tree: TreeSnapshot
    templates: dict[str, Template]  # full name -> template, excluded ones included
    errors: list[TemplateIssue]
    exclusions: list[TemplateIssue]
    warnings: list[TemplateIssue] = field(default_factory=list)
    stats: LoadStats = LoadStats(0, 0, 0, 0.0)

    @property
    def buildable(self) -> dict[str, Template]:
        return {name: t for name, t in self.templates.items() if t.excluded is None}

    @property
    def failed(self) -> set[str]:
        """Full names of templates (and tree entries) with errors."""
        return {issue.template for issue in self.errors}

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.context.target.arch,
            "host_arch": self.context.host.arch,
            "cross": self.context.cross,
            "stage": self.context.stage,
            "templates": [self.templates[name].to_json() for name in sorted(self.templates)],
            "exclusions": [{"template": i.template, "reason": i.message} for i in self.exclusions],
            "errors": [i.to_json() for i in self.errors],
            "warnings": [i.to_json() for i in self.warnings],
        }


class TreeLoader:
    """Loads one ports tree, again and again, doing only the work that changed."""

    def __init__(
        self,
        root: Path,
        *,
        settings: EvaluatorSettings | None = None,
        cache: EvaluationCache | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.scanner = TreeScanner(self.root)
        self.cache = cache if cache is not None else EvaluationCache(cache_dir)
        self.settings = settings
        self._evaluator: TemplateEvaluator | None = None
        # Rule outcomes per policy, by evaluation key: the same key and policy
        # give the same Template object, which lets the graph reuse its edges.
        self._rules: dict[LoadPolicy, dict[str, RuleOutcome]] = {}
        # The last key computed for each template file (object) and context.
        self._keys: dict[str, tuple[TemplateFile, str, str]] = {}

    @property
    def evaluator(self) -> TemplateEvaluator:
        if self._evaluator is None:
            self._evaluator = TemplateEvaluator(self.root, self.settings)
        return self._evaluator

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()
            self._evaluator = None

    def __enter__(self) -> TreeLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(
        self,
        arch: str,
        *,
        host_arch: str | None = None,
        policy: LoadPolicy | None = None,
        stage: int = 3,
        progress: Progress | None = None,
    ) -> LoadResult:
        started = time.perf_counter()
        policy = policy or LoadPolicy()
        known_outcomes = self._rules.setdefault(policy, {})
        cold = self._evaluator is None and not known_outcomes and len(self.cache) == 0
        starting: _EvaluatorStart | None = None
        if cold and self.cache.directory is None and policy.categories:
            # Nothing can be cached yet, so the sandbox is certainly needed.
            # Preparing it waits on child processes (probing the interpreter):
            # the tree is listed and read meanwhile.
            starting = _EvaluatorStart(self.root, self.settings)
        try:
            return self._load(
                arch,
                host_arch=host_arch,
                policy=policy,
                stage=stage,
                progress=progress,
                starting=starting,
                started=started,
            )
        finally:
            if starting is not None and self._evaluator is None:
                self._evaluator = starting.finish()  # so that close() stops it

    def _load(
        self,
        arch: str,
        *,
        host_arch: str | None,
        policy: LoadPolicy,
        stage: int,
        progress: Progress | None,
        starting: _EvaluatorStart | None,
        started: float,
    ) -> LoadResult:
        known_outcomes = self._rules[policy]
        categories = self.scanner.categories()
        context = resolve_context(arch, host=host_arch, tree=self.root, stage=stage)
        shared = context_digest(worker_version(), context.to_json())
        chains = TreeSnapshot(self.root, categories, {}).chains

        problems: list[tuple[str, str]] = []
        files: dict[str, TemplateFile] = {}
        exclusions: list[TemplateIssue] = []
        warnings: list[TemplateIssue] = [
            TemplateIssue(f"{category}/{name}", "bad directory encountered (no template.py)")
            for category, listing in categories.items()
            for name in listing.oddities
        ]
        outcomes: dict[str, RuleOutcome] = {}
        keys: dict[str, str] = {}
        names: dict[str, str] = {}  # key -> full name, for what goes to the workers

        def conclude(full_name: str, key: str, result: dict[str, Any]) -> None:
            file = files[full_name]
            outcome = apply_rules(
                result,
                category=file.category,
                dirname=file.name,
                context=context,
                policy=policy,
                digest=file.digest,
                key=key,
                repositories=chains[file.category],
            )
            outcomes[full_name] = outcome
            if not result.get("transient"):
                known_outcomes[key] = outcome

        # A cold load reads the categories interleaved, so that every pool of
        # workers has work from the start; others read the tree in order.
        runs: Iterable[tuple[str, Iterable[str]]] = (
            _interleaved(categories)
            if starting is not None
            else ((category, listing.templates) for category, listing in categories.items())
        )

        def requests() -> Iterator[EvaluationRequest]:
            # Reading and hashing files happens here, interleaved with the
            # workers' evaluation: only unknown templates are yielded.
            for category, run in runs:
                allowed = category in policy.categories
                for name in run:
                    file = self.scanner.file(category, name, problems)
                    if file is None:
                        continue
                    full_name = file.full_name
                    files[full_name] = file
                    if not allowed:
                        exclusions.append(
                            TemplateIssue(
                                full_name,
                                "cannot be built, disallowed category "
                                f"(not in {', '.join(policy.categories)})",
                            )
                        )
                        continue
                    remembered = self._keys.get(full_name)
                    if remembered is not None and remembered[0] is file and remembered[1] == shared:
                        key = remembered[2]
                    else:
                        key = evaluation_key(
                            context=shared,
                            category=category,
                            name=name,
                            repositories=chains[category],
                            digest=file.digest,
                        )
                        self._keys[full_name] = (file, shared, key)
                    keys[full_name] = key
                    known = known_outcomes.get(key)
                    if known is not None:
                        outcomes[full_name] = known
                        continue
                    cached = self.cache.get(key)
                    if cached is not None:
                        conclude(full_name, key, cached)
                        continue
                    try:
                        source = self.scanner.source(file).decode("utf-8")
                    except UnicodeDecodeError as error:
                        result = {"ok": False, "error": f"template.py is not UTF-8: {error}"}
                        conclude(full_name, key, result)
                        continue
                    names[key] = full_name
                    yield EvaluationRequest(key, category, name, source, chains[category])

        def arrived(key: str, result: dict[str, Any]) -> None:
            if not result.get("transient"):
                self.cache.put(key, result)
            conclude(names[key], key, result)

        pending: Iterator[EvaluationRequest] = requests()
        if starting is not None:
            # Read on until the sandbox is ready, then size the worker pools
            # by what each category holds and start them.
            read: list[EvaluationRequest] = []
            while not starting.done():
                request = next(pending, None)
                if request is None:
                    break
                read.append(request)
            self._evaluator = starting.result()
            self._evaluator.prepare(
                {
                    c: len(listing.templates)
                    for c, listing in categories.items()
                    if c in policy.categories
                }
            )
            pending = itertools.chain(read, pending)
        first = next(pending, None)
        if first is not None:  # the sandbox is needed only when something is unknown
            self.evaluator.evaluate(
                itertools.chain([first], pending), context, progress, on_result=arrived
            )
        if starting is not None:  # the snapshot lists the tree in order
            tree_order = [f"{category}/{name}" for category, name in _tree_order(categories)]
            files = {name: files[name] for name in tree_order if name in files}
            if len(problems) > 1:
                rank = {name: index for index, name in enumerate(tree_order)}
                problems.sort(key=lambda problem: rank[problem[0]])
        snapshot = self.scanner.snapshot(categories, files, problems)
        errors = [TemplateIssue(name, message) for name, message in snapshot.problems]

        templates: dict[str, Template] = {}
        for full_name in keys:
            outcome = outcomes[full_name]
            if outcome.template is None:
                errors += [TemplateIssue(full_name, message) for message in outcome.errors]
            else:
                templates[full_name] = outcome.template

        errors += _check_symlinks(snapshot, templates, policy)
        for full_name in {issue.template for issue in errors}:
            templates.pop(full_name, None)
        exclusions += [
            TemplateIssue(name, t.excluded) for name, t in templates.items() if t.excluded
        ]
        self._forget_stale(keys)
        stats = LoadStats(
            templates=len(snapshot.templates),
            evaluated=len(names),
            cached=len(keys) - len(names),
            seconds=time.perf_counter() - started,
        )
        return LoadResult(
            context=context,
            policy=policy,
            tree=snapshot,
            templates=dict(sorted(templates.items())),
            errors=sorted(errors, key=lambda i: (i.template, i.message)),
            exclusions=sorted(exclusions, key=lambda i: i.template),
            warnings=warnings,
            stats=stats,
        )

    def _forget_stale(self, keys: dict[str, str]) -> None:
        # Rule outcomes are small, but a scheduler runs for months: keep those
        # of the current tree (for every policy seen) and drop the rest.
        for policy, outcomes in self._rules.items():
            if len(outcomes) > 4 * max(len(keys), 1000):
                live = set(keys.values())
                self._rules[policy] = {k: v for k, v in outcomes.items() if k in live}


def _interleaved(categories: Mapping[str, CategoryListing]) -> list[tuple[str, list[str]]]:
    """Every template name, in runs of one category, the categories interleaved by size.

    Each category has its own workers; reading the categories one after the
    other would leave the later ones' workers idle until the first is read.
    """
    order = [
        ((index + 0.5) / len(listing.templates), category, name)
        for category, listing in categories.items()
        for index, name in enumerate(listing.templates)
    ]
    order.sort()
    runs: list[tuple[str, list[str]]] = []
    for _, category, name in order:
        if runs and runs[-1][0] == category:
            runs[-1][1].append(name)
        else:
            runs.append((category, [name]))
    return runs


def _tree_order(categories: Mapping[str, CategoryListing]) -> Iterator[tuple[str, str]]:
    for category, listing in categories.items():
        for name in listing.templates:
            yield category, name


class _EvaluatorStart:
    """Makes a TemplateEvaluator in a thread: preparing its sandbox waits on
    child processes the first time in a process, and the tree can be read
    meanwhile."""

    def __init__(self, root: Path, settings: EvaluatorSettings | None) -> None:
        self._evaluator: TemplateEvaluator | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(root, settings), name="apkfarm-evaluator-start", daemon=True
        )
        self._thread.start()

    def _run(self, root: Path, settings: EvaluatorSettings | None) -> None:
        try:
            self._evaluator = TemplateEvaluator(root, settings)
        except BaseException as error:  # handed to the loading thread by result()
            self._error = error

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> TemplateEvaluator:
        """The evaluator; raises what making it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._evaluator is not None
        return self._evaluator

    def finish(self) -> TemplateEvaluator | None:
        """The evaluator, or None if making it failed (the load failed first)."""
        self._thread.join()
        return self._evaluator


def _check_symlinks(
    snapshot: TreeSnapshot, templates: dict[str, Template], policy: LoadPolicy
) -> list[TemplateIssue]:
    """cbuild's subpackage symlink rules, plus links that no template declares."""
    issues: list[TemplateIssue] = []
    for category, listing in snapshot.categories.items():
        if category not in policy.categories:
            continue
        directories = listing.template_set
        for link, target in listing.symlinks.items():
            where = f"{category}/{link}"
            if "/" in target or target not in directories:
                issues.append(
                    TemplateIssue(
                        where, f"symlink -> {target} does not point to a template in {category}/"
                    )
                )
                continue
            owner = templates.get(f"{category}/{target}")
            if owner is not None and link not in owner.all_subpackages:
                issues.append(
                    TemplateIssue(
                        where,
                        f"symlink -> {target} does not match a subpackage declared by "
                        f"{category}/{target}",
                    )
                )
        for name in listing.templates:
            template = templates.get(f"{category}/{name}")
            if template is None:
                continue
            for subpackage in template.subpackages:
                link_target = listing.symlinks.get(subpackage.name)
                if link_target is None:
                    issues.append(
                        TemplateIssue(
                            template.full_name,
                            f"subpackage '{subpackage.name}' is missing a symlink "
                            f"({category}/{subpackage.name} -> {name}; "
                            "'cbuild relink-subpkgs' creates them)",
                        )
                    )
                elif link_target != name:
                    issues.append(
                        TemplateIssue(
                            template.full_name,
                            f"subpackage '{subpackage.name}' has incorrect symlink "
                            f"({category}/{subpackage.name} -> {link_target}, expected -> {name})",
                        )
                    )
    return issues


def load_tree(
    root: Path,
    arch: str,
    *,
    host_arch: str | None = None,
    policy: LoadPolicy | None = None,
    stage: int = 3,
    settings: EvaluatorSettings | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Load `root` once for `arch` (a TreeLoader that is closed afterwards)."""
    with TreeLoader(root, settings=settings, cache_dir=cache_dir) as loader:
        return loader.load(arch, host_arch=host_arch, policy=policy, stage=stage, progress=progress)
