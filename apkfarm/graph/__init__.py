"""Per-architecture build graph, cycles, waves and the rebuild plan.

``build_graph(load)`` turns a loaded tree (``apkfarm.templates.LoadResult``)
into a ``BuildGraph``; ``make_plan(graph, repository)`` decides what must
build given the packages a repository holds, and ``Plan.explain()`` says why
a template is or is not ready. Nothing here runs template code.
"""

from apkfarm.graph.algorithms import cycles, strongly_connected, waves
from apkfarm.graph.build import BUILD_KINDS, BuildGraph, Edge, GraphBuilder, Missing, build_graph
from apkfarm.graph.plan import Explanation, Plan, PlannedBuild, make_plan
from apkfarm.graph.resolve import NameIndex, Resolution

__all__ = [
    "BUILD_KINDS",
    "BuildGraph",
    "Edge",
    "Explanation",
    "GraphBuilder",
    "Missing",
    "NameIndex",
    "Plan",
    "PlannedBuild",
    "Resolution",
    "build_graph",
    "cycles",
    "make_plan",
    "strongly_connected",
    "waves",
]
