"""Causal graphs over named binary nodes (paths, d-separation, backdoor and mediator sets) and exact binary SCMs."""
from __future__ import annotations

import itertools
import string
from dataclasses import dataclass, field

import numpy as np

LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class CausalGraph:
    """A DAG. `nodes` order is the letter order (A, B, C, ...) and the tie-break order of every set choice."""

    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    _children: dict = field(init=False, repr=False, compare=False)
    _parents: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        known = set(self.nodes)
        if len(known) != len(self.nodes):
            raise ValueError(f"duplicate node names in {self.nodes}")
        children = {n: [] for n in self.nodes}
        parents = {n: [] for n in self.nodes}
        for a, b in self.edges:
            if a not in known or b not in known:
                raise ValueError(f"edge {a}->{b} names a node outside {self.nodes}")
            if b not in children[a]:
                children[a].append(b)
                parents[b].append(a)
        rank = {n: i for i, n in enumerate(self.nodes)}
        for n in parents:                 # letter order: the CPT bit order of BinarySCM
            parents[n].sort(key=rank.__getitem__)
        # children keep the order of `edges`: the generators walk paths in the order they list the edges
        object.__setattr__(self, "_children", children)
        object.__setattr__(self, "_parents", parents)
        if self.topological_order() is None:
            raise ValueError(f"graph has a cycle: {self.edges}")

    @classmethod
    def from_edges(cls, edges, nodes=None) -> "CausalGraph":
        """Nodes default to order of first appearance in `edges`."""
        order = list(nodes or [])
        for a, b in edges:
            for n in (a, b):
                if n not in order:
                    order.append(n)
        return cls(tuple(order), tuple((a, b) for a, b in edges))

    def letter(self, node: str) -> str:
        return LETTERS[self.nodes.index(node)]

    def parents(self, n: str) -> list[str]:
        return list(self._parents[n])

    def children(self, n: str) -> list[str]:
        return list(self._children[n])

    def has_edge(self, a: str, b: str) -> bool:
        return b in self._children[a]

    def topological_order(self) -> list[str] | None:
        indeg = {n: len(self._parents[n]) for n in self.nodes}
        ready = [n for n in self.nodes if indeg[n] == 0]
        out = []
        while ready:
            n = ready.pop(0)
            out.append(n)
            for c in self._children[n]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
        return out if len(out) == len(self.nodes) else None

    def descendants(self, n: str) -> set[str]:
        """Strict descendants (n itself excluded)."""
        return _reach(n, self._children)

    def ancestors(self, n: str) -> set[str]:
        """Strict ancestors (n itself excluded)."""
        return _reach(n, self._parents)

    def directed_paths(self, x: str, y: str) -> list[list[str]]:
        """All directed paths x -> ... -> y, depth first, children visited in the order `edges` lists them."""
        out = []

        def walk(path):
            for c in self._children[path[-1]]:
                if c == y:
                    out.append(path + [c])
                elif c not in path:
                    walk(path + [c])

        walk([x])
        return out

    def has_path(self, x: str, y: str) -> bool:
        return y in self.descendants(x)

    def has_mediated_path(self, x: str, y: str) -> bool:
        """A directed path with three or more vertices (the NIE cause rule)."""
        return any(y in self.descendants(c) for c in self._children[x])

    def mediators(self, x: str, y: str) -> list[str]:
        """Nodes strictly between x and y on some directed path, in letter order."""
        between = self.descendants(x) & self.ancestors(y)
        return [n for n in self.nodes if n in between]

    def d_separated(self, xs, ys, zs) -> bool:
        """xs _||_ ys | zs, by moralising the ancestral graph of xs | ys | zs (Lauritzen et al. 1990)."""
        xs, ys, zs = set(xs), set(ys), set(zs)
        keep = xs | ys | zs
        for n in list(keep):
            keep |= self.ancestors(n)
        adj = {n: set() for n in keep}
        for n in keep:
            ps = [p for p in self._parents[n] if p in keep]
            for p in ps:
                adj[n].add(p)
                adj[p].add(n)
            for p, q in itertools.combinations(ps, 2):    # marry co-parents
                adj[p].add(q)
                adj[q].add(p)
        stack, seen = [x for x in xs if x not in zs], set()
        while stack:
            n = stack.pop()
            if n in ys:
                return False
            if n in seen:
                continue
            seen.add(n)
            stack.extend(m for m in adj[n] if m not in zs and m not in seen)
        return True

    def without_out_edges(self, x: str) -> "CausalGraph":
        return CausalGraph(self.nodes, tuple(e for e in self.edges if e[0] != x))

    def is_backdoor_set(self, x: str, y: str, z) -> bool:
        """Pearl's backdoor criterion: no descendant of x in z, and z blocks every path into x."""
        z = set(z)
        if x in z or y in z or z & self.descendants(x):
            return False
        return self.without_out_edges(x).d_separated({x}, {y}, z)

    def is_joint_backdoor_set(self, treatments, y: str, z) -> bool:
        """Backdoor criterion for a set of treatments at once (CDE's do(X, M)): z holds no descendant of a treatment
        and d-separates the treatments from y once every edge out of a treatment is cut."""
        z, ts = set(z), set(treatments)
        bad = set(ts) | {y}
        for t in ts:
            bad |= self.descendants(t)
        if z & bad:
            return False
        cut = CausalGraph(self.nodes, tuple(e for e in self.edges if e[0] not in ts))
        return cut.d_separated(ts, {y}, z)

    def is_mediation_set(self, x: str, y: str, mediators, z) -> bool:
        """z deconfounds x->y, every mediator->y given x, and x->mediators (the NDE/NIE identification conditions)."""
        z = set(z)
        if z & (self.descendants(x) | {x, y} | set(mediators)) or not self.is_backdoor_set(x, y, z):
            return False
        for m in mediators:
            if not self.without_out_edges(m).d_separated({m}, {y}, z | {x}):
                return False
            if not self.without_out_edges(x).d_separated({x}, {m}, z):
                return False
        return True

    def adjustment_sets(self, x: str, y: str, kind: str = "backdoor", mediators=(), max_size: int = 3):
        """Valid adjustment sets, smallest first, ties in letter order.

        kind: "backdoor" (ATE, ETT, PN, PS), "joint" (CDE: `mediators` are the conditioned nodes, set by do()),
        "mediation" (NDE, NIE). CauGym's generator picks one of the smallest valid sets at random; every set it
        shows in Step 3 is valid under these criteria (checked against all CaLM and CauGym Reasons).
        """
        mediators = list(mediators)
        bad = self.descendants(x) | {x, y} | set(mediators)
        pool = [n for n in self.nodes if n not in bad]
        for k in range(min(max_size, len(pool)) + 1):
            for z in itertools.combinations(pool, k):
                if kind == "backdoor":
                    ok = self.is_backdoor_set(x, y, z)
                elif kind == "joint":
                    ok = self.is_joint_backdoor_set([x, *mediators], y, z)
                elif kind == "mediation":
                    ok = self.is_mediation_set(x, y, mediators, z)
                else:
                    raise ValueError(f"unknown adjustment kind {kind!r}")
                if ok:
                    yield list(z)


@dataclass(frozen=True)
class BinarySCM:
    """A binary Bayesian network on `graph`: cpt[n][k] = P(n=1 | parents in letter order = bits of k, first = MSB)."""

    graph: CausalGraph
    cpt: dict

    def joint(self) -> np.ndarray:
        """P over all 2^n assignments; axis i is graph.nodes[i]."""
        nodes = self.graph.nodes
        idx = {n: i for i, n in enumerate(nodes)}
        grid = np.array(list(itertools.product((0, 1), repeat=len(nodes))), dtype=np.int64)
        p = np.ones(len(grid))
        for n in nodes:
            ps = self.graph.parents(n)
            k = np.zeros(len(grid), dtype=np.int64)
            for q in ps:
                k = k * 2 + grid[:, idx[q]]
            p1 = np.asarray(self.cpt[n], dtype=np.float64)[k]
            p *= np.where(grid[:, idx[n]] == 1, p1, 1.0 - p1)
        return p.reshape((2,) * len(nodes))

    def do(self, assignment: dict) -> "BinarySCM":
        """The mutilated model: edges into the intervened nodes cut, each fixed to its 0/1 value."""
        cut = CausalGraph(self.graph.nodes, tuple(e for e in self.graph.edges if e[1] not in assignment))
        cpt = {n: ([float(assignment[n])] if n in assignment else self.cpt[n]) for n in self.graph.nodes}
        return BinarySCM(cut, cpt)

    def prob(self, event: dict, given: dict | None = None, joint: np.ndarray | None = None) -> float:
        """P(event | given) for dicts node -> 0/1."""
        j = self.joint() if joint is None else joint
        given = given or {}
        clash = {k for k in event if k in given and event[k] != given[k]}
        if clash:
            return 0.0
        return _marginal(j, self.graph.nodes, {**given, **event}) / _marginal(j, self.graph.nodes, given)


def _marginal(joint: np.ndarray, nodes, fixed: dict) -> float:
    sl = tuple(fixed[n] if n in fixed else slice(None) for n in nodes)
    return float(joint[sl].sum())


def _reach(n: str, edges: dict) -> set[str]:
    """Every node reachable from n along `edges` (children or parents), n itself excluded."""
    seen, stack = set(), list(edges[n])
    while stack:
        m = stack.pop()
        if m not in seen:
            seen.add(m)
            stack.extend(edges[m])
    return seen
