"""The seven CauGym quantities (ATE, CDE, ETT, NDE, NIE, PN, PS) from given probabilities, with CauGym's conventions."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from caujax.causal.answer import EFFECT_TYPES, TYPES
from caujax.causal.scm import CausalGraph

NEAR_ZERO = 0.001        # |effect| below this is reported as "~=0 so the answer is No" (DATA.md 1.4)

Assignment = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Term:
    """P(target | given); both are ordered (node, 0/1) pairs, order kept for display only."""

    target: Assignment
    given: Assignment = ()

    @property
    def key(self):
        return frozenset(self.target), frozenset(self.given)

    def complement(self) -> "Term | None":
        if len(self.target) != 1:
            return None
        (n, v), = self.target
        return Term(((n, 1 - v),), self.given)


class MissingFact(LookupError):
    def __init__(self, term: Term):
        super().__init__(f"missing probability {term}")
        self.term = term


class Facts:
    """Given probabilities. A one-node target also answers its complement as 1 - p, as the Reason's Step 5 does."""

    def __init__(self, items=()):
        self._d: dict = {}
        self.conflicts: list[Term] = []
        for term, v in items:
            self.add(term, v)

    def add(self, term: Term, value: float) -> None:
        old = self._d.get(term.key)
        if old is not None and abs(old - value) > 1e-9:
            self.conflicts.append(term)
        self._d.setdefault(term.key, float(value))

    def get(self, term: Term) -> float | None:
        v = self._d.get(term.key)
        if v is not None:
            return v
        c = term.complement()
        if c is not None and c.key in self._d:
            return round(1.0 - self._d[c.key], 10)
        return None

    def __call__(self, term: Term) -> float:
        v = self.get(term)
        if v is None:
            raise MissingFact(term)
        return v

    def __len__(self):
        return len(self._d)

    def items(self):
        return self._d.items()


@dataclass(frozen=True)
class Query:
    """What is asked. x: the treatment value of the hypothetical world (the "changed to"/"had been" value);
    y: the outcome value asked about (for PN/PS the "would have been" value). Factual values are 1-x, 1-y."""

    type: str
    treatment: str
    outcome: str
    x: int
    y: int
    given: Assignment = ()            # CDE: the conditioned (do-set) nodes, in question order
    bound: str | None = None          # PN/PS: "lower" | "upper"

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"type must be one of {TYPES}, got {self.type!r}")
        if self.x not in (0, 1) or self.y not in (0, 1):
            raise ValueError(f"x and y must be 0/1, got {self.x}, {self.y}")
        if (self.type in ("PN", "PS")) != (self.bound in ("lower", "upper")):
            raise ValueError(f"{self.type} needs bound lower/upper only for PN/PS, got {self.bound!r}")
        if self.treatment == self.outcome:
            raise ValueError(f"treatment and outcome are the same node {self.treatment!r}")


@dataclass(frozen=True)
class Solution:
    query: Query
    cause: bool                       # False: the non-cause rule applied (PROB 0, No)
    mediators: tuple = ()
    adjustment: tuple = ()
    value: float | None = None        # unrounded
    terms: tuple = ()                 # ((Term, value), ...) in the Reason's Step 5 order (PN/PS: Step 1 then Step 2)
    do_value: float | None = None     # PN/PS: P(.|do(.)) rounded to 4 decimals, as the Reason does

    @property
    def prob(self) -> float:
        return 0.0 if self.value is None else round4(self.value)

    @property
    def answer(self) -> str | None:
        return decide(self.query.type, self.value if self.cause else 0.0)


def round4(v: float) -> float:
    r = round(v + 0.0, 4)
    return 0.0 if r == 0 else r


def decide(qtype: str, value: float) -> str | None:
    """Yes/No of the effect types from the unrounded value (the data has 0.00098 -> "0.001" labelled No).
    ETT is Yes iff the value < 0 (factual minus counterfactual, the Reason convention)."""
    if qtype not in EFFECT_TYPES:
        return None
    if abs(value) < NEAR_ZERO:
        return "No"
    return "Yes" if (value < 0 if qtype == "ETT" else value > 0) else "No"


def is_cause(graph: CausalGraph, q: Query) -> bool:
    """CauGym's non-cause shortcuts: no directed path (ATE, ETT), no edge (CDE, NDE), no path of >= 3 vertices (NIE)."""
    if q.type in ("ATE", "ETT"):
        return graph.has_path(q.treatment, q.outcome)
    if q.type in ("CDE", "NDE"):
        return graph.has_edge(q.treatment, q.outcome)
    if q.type == "NIE":
        return graph.has_mediated_path(q.treatment, q.outcome)
    return True


def mediator_set(graph: CausalGraph, q: Query) -> list[str]:
    return graph.mediators(q.treatment, q.outcome) if q.type in ("NDE", "NIE") else []


def adjustment_candidates(graph: CausalGraph, q: Query, mediators=(), max_size: int = 3):
    kind = {"CDE": "joint", "NDE": "mediation", "NIE": "mediation"}.get(q.type, "backdoor")
    extra = [n for n, _ in q.given] if q.type == "CDE" else list(mediators)
    return graph.adjustment_sets(q.treatment, q.outcome, kind, extra, max_size=max_size)


class _Recorder:
    def __init__(self, p):
        self.p, self.log = p, []

    def __call__(self, target, given=()) -> float:
        t = Term(tuple(target), tuple(given))
        v = self.p(t)
        self.log.append((t, v))
        return v


def value_assignments(nodes):
    """Assignments of `nodes` in the Reason's order (first node most significant)."""
    return [tuple(zip(nodes, bits)) for bits in itertools.product((0, 1), repeat=len(nodes))]


def evaluate(q: Query, p, adjustment=(), mediators=()) -> tuple[float, tuple, float | None]:
    """(unrounded value, ((Term, value), ...) in Step 5 order, PN/PS do-value) for a chosen Z and M.

    The formulas of DATA.md 1.4 (Pearl's adjustment and mediation formulas; Tian & Pearl 2000 for the PN/PS
    bounds), written in (x, y) = (hypothetical treatment value, asked outcome value). p(Term) -> float raises
    MissingFact for an unavailable probability.
    """
    r = _Recorder(p)
    X, Y, x, y = q.treatment, q.outcome, q.x, q.y
    xo = 1 - x
    Z, M = list(adjustment), list(mediators)
    yv = ((Y, y),)
    do_value = None
    if q.type == "ATE":
        if not Z:
            val = r(yv, ((X, x),)) - r(yv, ((X, xo),))
        else:
            val = 0.0
            for z in value_assignments(Z):
                a, b, pz = r(yv, ((X, x), *z)), r(yv, ((X, xo), *z)), r(z)
                val += a * pz - b * pz
    elif q.type == "CDE":
        g = tuple(q.given)
        if not Z:
            val = r(yv, ((X, x), *g)) - r(yv, ((X, xo), *g))
        else:
            val = 0.0
            for z in value_assignments(Z):
                a, pz, b = r(yv, ((X, x), *g, *z)), r(z), r(yv, ((X, xo), *g, *z))
                val += (a - b) * pz
    elif q.type == "ETT":
        # factual minus counterfactual: E[Y_{x_f} - Y_{x_cf} | x_f], with x_cf = q.x
        val = r(yv, ((X, xo),))
        if not Z:
            val -= r(yv, ((X, x),))
        else:
            for z in value_assignments(Z):
                val -= r(yv, ((X, x), *z)) * r(z, ((X, xo),))
    elif q.type == "NDE":
        val = 0.0
        for z in value_assignments(Z):
            for m in value_assignments(M):
                a, b = r(yv, ((X, x), *m, *z)), r(yv, ((X, xo), *m, *z))
                w = r(m, ((X, xo), *z)) if M else 1.0
                pz = r(z) if Z else 1.0
                val += (a - b) * w * pz
    elif q.type == "NIE":
        if not M:
            raise ValueError("NIE needs a non-empty mediator set")
        val = 0.0
        for z in value_assignments(Z):
            for m in value_assignments(M):
                a, m1, m0 = r(yv, ((X, xo), *m, *z)), r(m, ((X, x), *z)), r(m, ((X, xo), *z))
                pz = r(z) if Z else 1.0
                val += a * (m1 - m0) * pz
    else:                                                       # PN, PS: the same bounds in (x, y) terms
        yd = y if q.bound == "upper" else 1 - y                 # upper needs P(y|do(x)), lower P(y'|do(x))
        if not Z:
            do = r(((Y, yd),), ((X, x),))
        else:
            do = sum(r(((Y, yd),), ((X, x), *z)) * r(z) for z in value_assignments(Z))
        do_value = round4(do)
        if q.bound == "lower":
            num = r(((Y, 1 - y),)) - do_value
        else:
            num = do_value - r(((X, x), (Y, y)))
        den = r(((X, xo), (Y, 1 - y)))
        if den <= 0:
            raise ZeroDivisionError(f"P(factual) is {den} in {q}")
        val = max(0.0, num / den) if q.bound == "lower" else min(1.0, num / den)
    return val, tuple(r.log), do_value


def solve_query(graph: CausalGraph, q: Query, p, adjustment=None, max_size: int = 3) -> Solution:
    """Apply the non-cause rule, then the first valid adjustment set whose probabilities are all available.

    `adjustment` fixes Z (the generator's choice); otherwise the valid sets are tried smallest first, because the
    generator picks one of several equally small valid sets at random and only its probabilities are given.
    Raises MissingFact (for the first candidate) when no candidate has all its probabilities.
    """
    for n in (q.treatment, q.outcome, *(n for n, _ in q.given)):
        if n not in graph.nodes:
            raise ValueError(f"node {n!r} of the query is not in the graph {graph.nodes}")
    if not is_cause(graph, q):
        return Solution(q, cause=False, value=0.0)
    M = mediator_set(graph, q)
    cands = [adjustment] if adjustment is not None else adjustment_candidates(graph, q, M, max_size)
    first_missing = None
    for Z in cands:
        try:
            val, terms, do = evaluate(q, p, Z, M)
        except MissingFact as e:
            first_missing = first_missing or e
            continue
        return Solution(q, cause=True, mediators=tuple(M), adjustment=tuple(Z), value=val, terms=terms, do_value=do)
    if first_missing is None:
        raise ValueError(f"no valid adjustment set of size <= {max_size} for {q}")
    raise first_missing


def bound_interval(q: Query, p, adjustment=(), delta: float = 5e-5) -> tuple[float, float]:
    """Range of a PN/PS bound when every shown input moves by up to +-delta and the do-value is not rounded.

    The newer generator computed its ground truth from unrounded probabilities but prints 4 decimals, so a few
    PN/PS labels (tiny denominators) differ from the recomputed value; a label inside this range is consistent.
    The bound is monotone in each input separately, so the extremes sit at corners of the input box.
    """
    if q.type not in ("PN", "PS"):
        raise ValueError(f"bound_interval is for PN/PS, not {q.type}")
    _, terms, _ = evaluate(q, p, adjustment)
    keys = list(dict.fromkeys(t.key for t, _ in terms))
    base = {t.key: v for t, v in terms}
    lo, hi = float("inf"), float("-inf")
    for signs in itertools.product((-1.0, 1.0), repeat=len(keys)):
        moved = {k: base[k] + s * delta for k, s in zip(keys, signs)}
        val = _bound_unrounded(q, lambda t: moved[t.key], adjustment)
        lo, hi = min(lo, val), max(hi, val)
    return lo, hi


def _bound_unrounded(q: Query, p, adjustment) -> float:
    X, Y, x, y = q.treatment, q.outcome, q.x, q.y
    yd = y if q.bound == "upper" else 1 - y
    Z = list(adjustment)
    if not Z:
        do = p(Term(((Y, yd),), ((X, x),)))
    else:
        do = sum(p(Term(((Y, yd),), ((X, x), *z))) * p(Term(z)) for z in value_assignments(Z))
    num = p(Term(((Y, 1 - y),))) - do if q.bound == "lower" else do - p(Term(((X, x), (Y, y))))
    den = max(p(Term(((X, 1 - x), (Y, 1 - y)))), 1e-12)
    return max(0.0, num / den) if q.bound == "lower" else min(1.0, num / den)


def flip_codes(sol: Solution, flips) -> Solution:
    """The same solution with the 0/1 codes of `flips` nodes swapped (value names are what the text fixes)."""
    flips = set(flips)
    if not flips:
        return sol

    def fa(assign):
        return tuple((n, 1 - v if n in flips else v) for n, v in assign)

    q = sol.query
    nq = Query(q.type, q.treatment, q.outcome, 1 - q.x if q.treatment in flips else q.x,
               1 - q.y if q.outcome in flips else q.y, fa(q.given), q.bound)
    terms = tuple((Term(fa(t.target), fa(t.given)), v) for t, v in sol.terms)
    return Solution(nq, sol.cause, sol.mediators, sol.adjustment, sol.value, terms, sol.do_value)
