"""cports-compatible templates: reading a ports tree exactly as cbuild does.

Template code is never executed in the calling process: ``TreeLoader`` (or
``load_tree``) scans the tree, has the templates evaluated by sandboxed
workers (``TemplateEvaluator``), and applies cbuild's load-time rules to
what they report (``rules``). The result is plain data: ``Template`` objects,
and the errors and exclusions that explain what is missing.
"""

from apkfarm.templates.cache import EvaluationCache, evaluation_key
from apkfarm.templates.evaluator import (
    EvaluationRequest,
    EvaluatorSettings,
    TemplateEvaluator,
    worker_version,
)
from apkfarm.templates.loader import LoadResult, LoadStats, TreeLoader, load_tree
from apkfarm.templates.model import CustomTarget, Subpackage, Template, TemplateIssue
from apkfarm.templates.rules import DEFAULT_CATEGORIES, LoadPolicy
from apkfarm.templates.tree import TreeScanner, TreeSnapshot

__all__ = [
    "DEFAULT_CATEGORIES",
    "CustomTarget",
    "EvaluationCache",
    "EvaluationRequest",
    "EvaluatorSettings",
    "LoadPolicy",
    "LoadResult",
    "LoadStats",
    "Subpackage",
    "Template",
    "TemplateEvaluator",
    "TemplateIssue",
    "TreeLoader",
    "TreeScanner",
    "TreeSnapshot",
    "evaluation_key",
    "load_tree",
    "worker_version",
]
