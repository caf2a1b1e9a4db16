"""Canonical labelling of a block's DAG: equal blocks (the same graph, layers numbered differently) get one form.

Two Network Structure Codes describe the same block when one is a renumbering of the other: the agent may add two
parallel branches in either order, or spell ``add(2, 1)`` as ``add(1, 2)``. :func:`canonical_order` returns a
numbering of the vertices that depends only on the graph, so relabelled copies of one block get the same code.

The algorithm is the individualisation-refinement scheme of graph-isomorphism tools (McKay and Piperno, "Practical
graph isomorphism, II", 2014), small enough to write out for graphs of at most a few dozen vertices:

1. colour refinement: start from ``(depth, label)`` (depth = longest path from the input), then split colour classes
   by the sorted colours of each vertex's predecessors and successors until the partition is stable (1-dimensional
   Weisfeiler-Leman on the directed graph). Colours are ranks of sorted signatures, so they never depend on the input
   numbering, and refinement keeps the order of earlier classes: the final order is depth-major, hence topological;
2. while a class has several vertices, individualise each of its vertices in turn (branch), refine, recurse;
3. every leaf of this search tree is a numbering; the canonical one is the numbering whose code (each vertex's label
   and the new numbers of its predecessors) is lexicographically smallest over all leaves.

Two leaves with the same code reveal an automorphism of the graph; branches that an automorphism fixing the current
path maps onto an explored branch give the same codes and are skipped (orbit pruning; twins, vertices with the same
label, predecessors and successors, are swapped by an automorphism at once), so symmetric blocks (many identical
parallel branches) stay cheap. The result is exact: the minimum is taken over an isomorphism-invariant
search tree, and only branches proven equivalent are pruned.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

__all__ = ["canonical_order"]

Code = tuple[tuple[Hashable, tuple[int, ...]], ...]


def _rank(keys: Sequence) -> list[int]:
    order = {k: i for i, k in enumerate(sorted(set(keys)))}
    return [order[k] for k in keys]


class _Search:
    def __init__(self, labels: Sequence[Hashable], preds: Sequence[Sequence[int]]) -> None:
        n = len(labels)
        self.n, self.labels, self.preds = n, list(labels), [tuple(p) for p in preds]
        self.succs: list[list[int]] = [[] for _ in range(n)]
        for v, ps in enumerate(self.preds):
            for p in ps:
                self.succs[p].append(v)
        depth = [0] * n
        for v in range(n):  # vertices are numbered topologically: every predecessor has a smaller number
            depth[v] = max((depth[p] + 1 for p in self.preds[v]), default=0)
        self.initial = _rank([(depth[v], labels[v]) for v in range(n)])
        self.best: tuple[Code, list[int], list[int]] | None = None  # code, order, path
        self.automorphisms: list[list[int]] = []

    def refine(self, colours: list[int]) -> list[int]:
        classes = len(set(colours))
        while True:
            signature = [
                (colours[v], tuple(sorted(colours[p] for p in self.preds[v])),
                 tuple(sorted(colours[s] for s in self.succs[v])))
                for v in range(self.n)
            ]  # fmt: skip
            colours = _rank(signature)
            count = len(set(colours))
            if count == classes:
                return colours
            classes = count

    def code(self, colours: list[int]) -> tuple[Code, list[int]]:
        order = sorted(range(self.n), key=colours.__getitem__)
        new = [0] * self.n
        for rank, v in enumerate(order):
            new[v] = rank
        code = tuple((self.labels[v], tuple(sorted((new[p] for p in self.preds[v]), reverse=True))) for v in order)
        return code, order

    def twin(self, u: int) -> tuple:
        """Vertices with the same twin key (label, predecessors, successors) can be swapped: an automorphism."""
        return (self.labels[u], tuple(sorted(self.preds[u])), tuple(sorted(self.succs[u])))

    def run(self, colours: list[int], path: list[int]) -> int:
        """Explore the subtree of ``path``; returns the depth the search should continue at (``len(path)`` or
        more: carry on; less: an automorphism maps this subtree onto an explored one, so return up to there)."""
        colours = self.refine(colours)
        sizes: dict[int, int] = {}
        for c in colours:
            sizes[c] = sizes.get(c, 0) + 1
        target = min((c for c, k in sizes.items() if k > 1), default=None)
        if target is None:  # a leaf: every vertex has its own colour
            code, order = self.code(colours)
            if self.best is None or code < self.best[0]:
                self.best = (code, order, path)
                return len(path)
            if code > self.best[0]:
                return len(path)
            # the same code: gamma maps every vertex of this leaf to its twin in the best leaf; it fixes the common
            # prefix of the two paths, so the branch this leaf lies in mirrors an explored one: abandon it
            gamma = [0] * self.n
            for v, w in zip(order, self.best[1]):
                gamma[v] = w
            self.automorphisms.append(gamma)
            common = 0
            while common < min(len(path), len(self.best[2])) and path[common] == self.best[2][common]:
                common += 1
            return common
        # orbits of the automorphisms that fix the path (union-find), to skip children equivalent to explored ones
        root = list(range(self.n))

        def find(v: int) -> int:
            while root[v] != v:
                root[v] = root[root[v]]
                v = root[v]
            return v

        def absorb(first: int) -> int:
            for gamma in self.automorphisms[first:]:
                if all(gamma[u] == u for u in path):
                    for v, w in enumerate(gamma):
                        a, b = find(v), find(w)
                        if a != b:
                            root[max(a, b)] = min(a, b)
            return len(self.automorphisms)

        seen = absorb(0)
        explored: list[int] = []
        twins: set[tuple] = set()
        for v in (u for u in range(self.n) if colours[u] == target):
            key = self.twin(v)
            if key in twins or find(v) in {find(u) for u in explored}:
                continue
            explored.append(v)
            twins.add(key)
            back = self.run(_rank([(c, u != v) for u, c in enumerate(colours)]), [*path, v])
            if back < len(path):
                return back
            seen = absorb(seen)
        return len(path)


def canonical_order(labels: Sequence[Hashable], preds: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The canonical numbering of a DAG whose vertices are numbered topologically.

    Args:
        labels: one comparable label per vertex (for a block: ``(type, kernel)``; the input vertex has its own).
        preds: the predecessors of each vertex, all with smaller numbers (order within a vertex is ignored: two
            predecessors feed a symmetric operation).

    Returns:
        ``order``: the vertices in canonical order (``order[k]`` gets the new number ``k``); predecessors always
        come before their successors, and two numberings of one graph give the same relabelled graph.

    Shapes:
        ``len(labels) == len(preds) == V``; the result has ``V`` entries.
    """
    search = _Search(labels, preds)
    search.run(search.initial, [])
    assert search.best is not None
    return tuple(search.best[1])
