"""Graph algorithms on plain adjacency maps: strongly connected components, cycles, waves.

A graph here is ``Mapping[node, Collection[node]]`` from a node to the nodes
it depends on. Every function is iterative (no recursion limit on deep
chains) and deterministic (sorted where order is free).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping

__all__ = ["cycles", "strongly_connected", "waves"]

Graph = Mapping[str, Collection[str]]


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in graph:
                    continue
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def _cycle_in(graph: Graph, component: list[str]) -> list[str]:
    """One shortest cycle through the first node of `component`, closed: [a, b, a]."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph.get(node, ())):
            if successor not in members:
                continue
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                path.reverse()
                return [*path, start]
            if successor not in previous:
                previous[successor] = node
                queue.append(successor)
    return [start, start]  # pragma: no cover - a component always holds a cycle


def cycles(graph: Graph) -> list[list[str]]:
    """One representative cycle per strongly connected component: ``[a, b, a]``."""
    return [_cycle_in(graph, component) for component in strongly_connected(graph)]


def waves(graph: Graph) -> tuple[list[list[str]], set[str]]:
    """Topological levels: wave 0 depends on nothing in the graph, wave n on waves < n.

    Returns the waves (each sorted) and the nodes that are in or behind a
    cycle and so appear in no wave.
    """
    remaining: dict[str, int] = {}
    dependents: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in graph.items():
        count = 0
        for dep in deps if isinstance(deps, set | frozenset) else set(deps):
            if dep in dependents and dep != node:
                count += 1
                dependents[dep].append(node)
        remaining[node] = count
    current = sorted(node for node, count in remaining.items() if count == 0)
    levels: list[list[str]] = []
    placed = 0
    while current:
        levels.append(current)
        placed += len(current)
        following: list[str] = []
        for node in current:
            for dependent in dependents[node]:
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    following.append(dependent)
        current = sorted(following)
    stuck = {node for node, count in remaining.items() if count > 0}
    return levels, stuck
