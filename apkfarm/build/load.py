"""Loading the one template a build needs, in the evaluation sandbox, with cbuild's rules.

A build does not load the whole tree: it evaluates ``<category>/<name>``
alone (one sandboxed worker) and applies the same load-time rules the
scheduler applied, so the metadata the packages get is what the scheduler
planned with.
"""

from __future__ import annotations

import re
from pathlib import Path

from apkfarm.build.errors import BuildError
from apkfarm.profiles import BuildContext
from apkfarm.templates.evaluator import EvaluationRequest, EvaluatorSettings, TemplateEvaluator
from apkfarm.templates.model import Template
from apkfarm.templates.rules import LoadPolicy, apply_rules
from apkfarm.templates.tree import TreeScanner, TreeSnapshot

__all__ = ["TemplateLoadError", "load_template", "split_name"]

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


class TemplateLoadError(BuildError):
    """The template to build is missing, refused by cbuild's rules, or may not build here."""


def split_name(full_name: str) -> tuple[str, str]:
    """``"main/libgreet"`` -> ``("main", "libgreet")``; anything else is refused."""
    category, slash, name = full_name.partition("/")
    if not slash or not _SEGMENT.fullmatch(category) or not _SEGMENT.fullmatch(name):
        raise TemplateLoadError(f"{full_name!r} is not a template name like main/foo")
    return category, name


def load_template(
    tree: Path,
    full_name: str,
    context: BuildContext,
    *,
    settings: EvaluatorSettings | None = None,
    allow_restricted: bool = False,
) -> Template:
    """Evaluate `full_name` of `tree` for `context`; raises TemplateLoadError for people."""
    category, name = split_name(full_name)
    scanner = TreeScanner(tree)
    categories = scanner.categories()
    listing = categories.get(category)
    if listing is None:
        raise TemplateLoadError(f"{full_name}: the tree has no category {category!r}")
    if name not in listing.template_set:
        target = listing.symlinks.get(name)
        if target is not None:
            raise TemplateLoadError(
                f"{full_name} is a subpackage of {category}/{target}; build that template"
            )
        raise TemplateLoadError(f"{full_name}: no such template in {tree}")
    problems: list[tuple[str, str]] = []
    file = scanner.file(category, name, problems)
    if file is None:
        detail = "; ".join(message for _, message in problems) or "cannot be read"
        raise TemplateLoadError(f"{full_name}: {detail}")
    try:
        source = scanner.source(file).decode("utf-8")
    except UnicodeDecodeError as error:
        raise TemplateLoadError(f"{full_name}: template.py is not UTF-8: {error}") from error
    repositories = TreeSnapshot(tree, categories, {}).repositories(category)
    request = EvaluationRequest("build", category, name, source, repositories)
    with TemplateEvaluator(tree, settings or EvaluatorSettings(jobs=1)) as evaluator:
        results = evaluator.evaluate([request], context)
    outcome = apply_rules(
        results["build"],
        category=category,
        dirname=name,
        context=context,
        policy=LoadPolicy(categories=(category,), allow_restricted=allow_restricted),
        digest=file.digest,
        repositories=repositories,
    )
    if outcome.template is None:
        raise TemplateLoadError(f"{full_name}: " + "; ".join(outcome.errors))
    template = outcome.template
    if template.excluded:
        raise TemplateLoadError(f"{full_name} {template.excluded} (target {context.target.arch})")
    return template
