"""New CauGym-style problems from random binary SCMs, with exact answers and step-by-step Reasons."""
from __future__ import annotations

import random
from dataclasses import dataclass

from caujax.causal.answer import LACK_CONDITION, TYPES, Answer
from caujax.causal.render import problem_text, reason_steps, short_reason
from caujax.causal.scm import LETTERS, BinarySCM, CausalGraph
from caujax.causal.tasks import (Facts, MissingFact, Query, Solution, Term, adjustment_candidates, evaluate,
                                 mediator_set, solve_query)
from caujax.causal.vocab import node_names

STYLES = ("real", "letters", "nonsense")
LAYOUTS = ("inline", "calm")
REASONS = ("caugym", "short")


@dataclass(frozen=True)
class Options:
    """Controls of `generate` (see its docstring)."""

    tasks: tuple = TYPES
    style: str = "real"
    layout: str = "inline"
    nodes: tuple = (4, 7)
    instruction: bool = True
    noncause: float = 1 / 3
    deconfounding: float = 0.0
    redundant: tuple = (0, 0)
    insufficient: float = 0.0
    shuffle_facts: bool = False
    max_adjustment: int = 1
    max_mediators: int = 1
    precision: int | None = None
    reason: str = "caugym"

    def __post_init__(self):
        bad = [t for t in self.tasks if t not in TYPES]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TYPES}, got {self.tasks}")
        if self.style not in STYLES + ("mixed",):
            raise ValueError(f"style must be one of {STYLES + ('mixed',)}, got {self.style!r}")
        if self.layout not in LAYOUTS + ("mixed",):
            raise ValueError(f"layout must be one of {LAYOUTS + ('mixed',)}, got {self.layout!r}")
        lo, hi = self.nodes
        if not 3 <= lo <= hi <= len(LETTERS):
            raise ValueError(f"nodes must satisfy 3 <= lo <= hi <= 26, got {self.nodes}")
        if self.precision is not None and not 1 <= self.precision <= 4:
            raise ValueError(f"precision must be 1-4 decimals (or None: any), got {self.precision}")
        if self.reason not in REASONS:
            raise ValueError(f"reason must be one of {REASONS}, got {self.reason!r}")
        for name in ("noncause", "deconfounding", "insufficient"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability, got {getattr(self, name)}")


def generate(n: int, seed: int, tasks=TYPES, style: str = "real", layout: str = "inline", *, nodes=(4, 7),
             instruction: bool = True, noncause: float = 1 / 3, deconfounding: float = 0.0, redundant=0,
             insufficient: float = 0.0, shuffle_facts: bool = False, precision: int | None = None,
             reason: str = "caugym") -> list[dict]:
    """n problems in the CauGym item format {problem, answer, Reason, Type}; the same seed gives the same items.

    tasks: types to cycle through. style: node names "real" | "letters" | "nonsense" | "mixed".
    layout: "inline" (the newer generator: `(A=0)` labels) | "calm" (CaLM `basic` wording) | "mixed".
    nodes: (min, max) graph size. instruction: keep the `Instruction:` line. noncause: share of effect items
    whose treatment is not a cause (PROB 0, No). deconfounding: share of items that need a non-empty backdoor set.
    redundant: extra true but irrelevant facts per item, an int or a (min, max) range. insufficient: share of
    items with needed facts removed (answer LACK_CONDITION, Reason of the complete problem).
    shuffle_facts: shuffle the order of the given facts.
    precision: None (the default) draws every conditional probability of the SCM uniformly from [0.02, 0.98];
    1-4 draws them from the multiples of 10^-precision in that range and keeps only items whose given facts and
    answer have at most that many decimals (for 1: the answer of an ATE is a one-digit subtraction). The text still
    writes four decimals. Few large graphs pass that filter: with precision, keep nodes small (3-5).
    reason: "caugym" (the 7-step Reason of CauGym's generator) | "short" (render.short_reason: the cause check,
    the formula, the numbers and the verdict, about half the tokens).
    """
    red = (redundant, redundant) if isinstance(redundant, int) else tuple(redundant)
    opts = Options(tuple(tasks), style, layout, tuple(nodes), instruction, noncause, deconfounding, red,
                   insufficient, shuffle_facts, precision=precision, reason=reason)
    return [make_item(random.Random(f"{seed}/{i}"), opts.tasks[i % len(opts.tasks)], opts) for i in range(n)]


def random_dag(rng: random.Random, k: int) -> CausalGraph:
    """Edges only from earlier to later letters, listed in letter order; every node is on some edge."""
    nodes = LETTERS[:k]
    p = rng.uniform(0.3, 0.55)
    edges = {(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:] if rng.random() < p}
    for i, v in enumerate(nodes):
        if not any(v in e for e in edges):
            j = rng.choice([j for j in range(k) if j != i])
            edges.add((nodes[min(i, j)], nodes[max(i, j)]))
    return CausalGraph(tuple(nodes), tuple(sorted(edges)))


def _pick_pair(rng, g: CausalGraph, qtype: str, cause: bool, max_med: int):
    pairs = [(a, b) for a in g.nodes for b in g.nodes if a != b]
    rng.shuffle(pairs)
    for x, y in pairs:
        path, edge, med = g.has_path(x, y), g.has_edge(x, y), g.mediators(x, y)
        if qtype in ("ATE", "ETT"):
            ok = path == cause
        elif qtype == "CDE":
            ok = path and bool(med) and edge == cause
        elif qtype == "NDE":
            ok = path and edge == cause and (not cause or len(med) <= max_med)
        elif qtype == "NIE":
            ok = path and (bool(med) == cause) and len(med) <= max_med
        else:
            ok = path
        if ok:
            return x, y
    return None


def _query(rng, g: CausalGraph, qtype: str, x_node: str, y_node: str) -> Query:
    if qtype == "PN":
        return Query("PN", x_node, y_node, 0, 0, bound=rng.choice(["lower", "upper"]))
    if qtype == "PS":
        return Query("PS", x_node, y_node, 1, 1, bound=rng.choice(["lower", "upper"]))
    given = ()
    if qtype == "CDE":
        med = g.mediators(x_node, y_node)
        rng.shuffle(med)
        given = tuple((m, rng.randint(0, 1)) for m in med)
    return Query(qtype, x_node, y_node, rng.randint(0, 1), rng.randint(0, 1), given)


def _distractors(rng, g: CausalGraph, scm: BinarySCM, joint, k: int, taken: set) -> list[tuple[Term, float]]:
    out = []
    for _ in range(50 * k):
        if len(out) >= k:
            break
        t = rng.choice(g.nodes)
        others = [n for n in g.nodes if n != t]
        given_nodes = rng.sample(others, rng.randint(0, min(2, len(others))))
        term = Term(((t, rng.randint(0, 1)),), tuple((n, rng.randint(0, 1)) for n in given_nodes))
        comp = term.complement()
        if term.key in taken or comp.key in taken:
            continue
        taken.add(term.key)
        out.append((term, round(scm.prob(dict(term.target), dict(term.given), joint), 4)))
    return out


def make_item(rng: random.Random, qtype: str, opts: Options) -> dict:
    """One item of type qtype; retries until the random graph supports the requested variant (lacking a fact,
    treatment a cause or not).

    Drawn per try, the variant that is rejected more often is under-represented: with precision=1, noncause=0.25
    gave 44% non-cause items, so with a precision the variant is drawn once, before the retries. Without one it is
    still drawn per try (non-cause shares 0.32-0.43 for 1/3 per type), which keeps every existing generated set,
    and the tests and presets measured on them, as they were; drawing it once there too is a change of data."""
    variant = _variant(rng, qtype, opts) if opts.precision is not None else None
    for _ in range(500):
        item = _try_item(rng, qtype, opts, variant)
        if item is not None:
            return item
    # A ValueError: the settings, not the code, rule the item out (CLIs print it as a one-line error).
    hint = " (few large graphs meet a precision: try smaller nodes)" if opts.precision else ""
    raise ValueError(f"could not generate a {qtype} item with {opts} in 500 tries{hint}")


def _variant(rng: random.Random, qtype: str, opts: Options) -> tuple[bool, bool]:
    """(lacking, cause): whether the item lacks a needed fact, and whether its treatment is a cause."""
    lacking = rng.random() < opts.insufficient
    return lacking, qtype in ("PN", "PS") or lacking or rng.random() >= opts.noncause


def _try_item(rng: random.Random, qtype: str, opts: Options, variant: tuple[bool, bool] | None) -> dict | None:
    g = random_dag(rng, rng.randint(*opts.nodes))
    lacking, cause = variant if variant is not None else _variant(rng, qtype, opts)
    pair = _pick_pair(rng, g, qtype, cause, opts.max_mediators)
    if pair is None:
        return None
    q = _query(rng, g, qtype, *pair)
    scm = BinarySCM(g, {v: [_draw(rng, opts.precision) for _ in range(2 ** len(g.parents(v)))] for v in g.nodes})
    joint = scm.joint()

    def exact(term: Term) -> float:
        return round(scm.prob(dict(term.target), dict(term.given), joint), 4)

    shown: list[tuple[Term, float]] = []
    if cause:
        M = mediator_set(g, q)
        cands = list(adjustment_candidates(g, q, M, max_size=opts.max_adjustment))
        if not cands:
            return None
        smallest = [z for z in cands if len(z) == len(cands[0])]
        need_z = rng.random() < opts.deconfounding
        if need_z and not smallest[0]:
            return None
        Z = rng.choice(smallest)          # CauGym picks among the smallest valid sets at random
        _, terms, _ = evaluate(q, exact, Z, M)
        hidden = set()
        if q.type in ("NDE", "NIE"):      # CauGym leaves P(M=1|..) and P(Z=1) to the complement rule
            hidden = {t.key for t, _ in terms if t.target[0][0] in set(M) | set(Z) and t.target[0][1] == 1}
        seen = set()
        for t, v in terms:
            if t.key not in seen and t.key not in hidden:
                seen.add(t.key)
                shown.append((t, v))
        sol = solve_query(g, q, Facts(shown), adjustment=Z)
        if qtype in ("PN", "PS") and Facts(shown)(Term(((q.treatment, 1 - q.x), (q.outcome, 1 - q.y)))) < 0.01:
            return None                   # keep the bound's denominator away from zero
    else:
        sol = solve_query(g, q, Facts())
    if opts.shuffle_facts:
        rng.shuffle(shown)
    needed = list(shown)
    if lacking:
        k = rng.randint(1, min(3, len(shown)))
        drop = {t.key for t, _ in rng.sample(shown, k)}
        shown = [(t, v) for t, v in shown if t.key not in drop]
    k_red = rng.randint(*opts.redundant) if opts.redundant[1] > 0 else 0
    if k_red:
        taken = {t.key for t, _ in needed} | {t.complement().key for t, _ in needed if t.complement()}
        for d in _distractors(rng, g, scm, joint, k_red, taken):
            shown.insert(rng.randint(0, len(shown)), d)
    if not _consistent(g, q, shown, sol, lacking):
        return None
    if opts.precision is not None and not all(_has_decimals(v, opts.precision) for v in
                                              [sol.prob, *(v for _, v in shown)]):
        return None
    style = rng.choice(STYLES) if opts.style == "mixed" else opts.style
    layout = rng.choice(LAYOUTS) if opts.layout == "mixed" else opts.layout
    names = dict(zip(g.nodes, node_names(rng, len(g.nodes), style)))
    text = problem_text(g, q, shown, names, labels=layout == "inline", instruction=opts.instruction)
    answer = LACK_CONDITION if lacking else Answer(qtype, sol.prob, sol.answer).to_json()
    steps = reason_steps(sol, g, {v: v for v in g.nodes})
    return {"problem": text, "answer": answer, "Reason": short_reason(steps) if opts.reason == "short" else steps,
            "Type": qtype}


def _draw(rng: random.Random, precision: int | None) -> float:
    """One entry of a conditional probability table: uniform on [0.02, 0.98], or on its multiples of 10^-precision."""
    if precision is None:
        return rng.uniform(0.02, 0.98)
    unit = 10 ** precision
    return rng.randint(max(1, round(0.02 * unit)), min(unit - 1, round(0.98 * unit))) / unit


def _has_decimals(value: float, precision: int) -> bool:
    scaled = value * 10 ** precision
    return abs(scaled - round(scaled)) < 1e-6


def _consistent(g: CausalGraph, q: Query, shown, sol: Solution, lacking: bool) -> bool:
    """The shown facts determine the intended answer (or, for insufficient items, none), whatever set is tried."""
    try:
        got = solve_query(g, q, Facts(shown))
    except MissingFact:
        return lacking
    return not lacking and got.prob == sol.prob and got.answer == sol.answer
