"""Evaluate the template again, inside the build sandbox, with a build-time ``self``.

This is the template worker's evaluation (``worker.Evaluation``) with one
difference: ``self`` is a ``BuildTemplate``. The template code runs exactly
as it did when the tree was loaded; what the worker only recorded — hook
functions, what subpackage functions return — is kept here to be run.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apkfarm.build.driver.api import BuildTemplate
from apkfarm.build.driver.config import BuildConfig
from apkfarm.templates import worker


@dataclass(frozen=True)
class DeclaredSubpackage:
    """A ``@subpackage`` whose condition held: its final name and its function."""

    name: str
    function: Callable[..., Any]
    alternative: str | None


@dataclass
class Evaluated:
    template: BuildTemplate
    namespace: dict[str, Any]
    subpackages: list[DeclaredSubpackage]
    spec: worker.Spec
    filename: str  # how tracebacks name template.py

    def function(self, name: str) -> Callable[..., Any] | None:
        value = self.namespace.get(name)
        return value if callable(value) else None

    def assigned(self, field: str) -> bool:
        """Whether the template itself set `field` (style defaults apply otherwise)."""
        return field in self.namespace


class BuildEvaluation(worker.Evaluation):
    def __init__(
        self,
        spec: worker.Spec,
        item: dict[str, Any],
        context: worker.Context,
        config: BuildConfig,
    ) -> None:
        super().__init__(spec, item, context)
        self.config = config
        self.namespace: dict[str, Any] = {}
        self.template: BuildTemplate | None = None

    def run(self) -> dict[str, Any]:
        item = self.item
        namespace: dict[str, Any] = {"__name__": f"{item['category']}/{item['name']}"}
        template = BuildTemplate(self.spec, item, self.context, namespace, self.config)
        injected = dict(builtins.__dict__)
        injected.update(
            self=template, subpackage=self._subpackage, custom_target=self._custom_target
        )
        namespace["__builtins__"] = injected
        namespace["__file__"] = self.filename
        code = compile(item["source"], self.filename, "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102 - the build sandbox exists to run this
        template._executing = False
        self.namespace = namespace
        self.template = template
        return self._collect(template, namespace)


def evaluate(config: BuildConfig) -> Evaluated:
    """Evaluate the configured template; raises worker.TemplateError for people."""
    spec = worker.Spec(config.spec)
    context = worker.Context(config.context)
    evaluation = BuildEvaluation(spec, config.item, context, config)
    try:
        result = evaluation.run()
    except worker.TemplateError:
        raise
    except Exception as error:
        raise worker.TemplateError(worker._describe(error, evaluation.filename)) from error
    problems = result.get("problems") or []
    if problems:
        raise worker.TemplateError("; ".join(str(p) for p in problems))
    assert evaluation.template is not None
    declared = [
        DeclaredSubpackage(
            name=evaluation._name(name, alternative),
            function=function,
            # "!alt" names the package like "alt" but records no alternative
            alternative=None if alternative and alternative.startswith("!") else alternative,
        )
        for name, function, alternative, active in evaluation.declared
        if active
    ]
    return Evaluated(evaluation.template, evaluation.namespace, declared, spec, evaluation.filename)
