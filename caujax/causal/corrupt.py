"""Wrong worked solutions (rejected sides for DPO/KTO): a plausible mistake rendered in the exact Reason format."""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, replace

from caujax.causal.answer import EFFECT_TYPES, LACK_CONDITION, Answer
from caujax.causal.parse import ParseError, parse_problem
from caujax.causal.render import align_reason, reason_steps, step7
from caujax.causal.tasks import MissingFact, Query, Solution, Term, evaluate, flip_codes, round4, solve_query

KINDS = {
    "ett_sign": "ETT computed as counterfactual minus factual (sign flipped)",
    "ett_convention": "ETT decided with the wrong sign convention (Yes iff PROB > 0)",
    "swap_groups": "treatment values swapped (intervention and baseline, or factual and counterfactual)",
    "ignore_adjustment": "backdoor set ignored; the first stratum's numbers used as if unadjusted",
    "swap_weights": "adjustment weights P(Z=0) and P(Z=1) swapped",
    "arithmetic_slip": "right formula, wrong arithmetic in the final step",
    "no_clamp": "PN/PS bound reported without the [0, 1] clamp",
    "wrong_cause": "cause check answered wrongly (a path or edge claimed absent, or present)",
    "false_lack": "LACK_CONDITION claimed although every needed probability is given",
    "fill_missing": "a missing probability silently assumed to be 0.5 instead of LACK_CONDITION",
}


@dataclass(frozen=True)
class Corruption:
    kind: str
    reason: dict
    answer: str                # CauGym answer string, wrong for the problem
    description: str


def corruptions(problem: str, reason: dict | None = None) -> list[Corruption]:
    """Every applicable corruption of a problem whose answer differs from the right one.

    `reason`, the item's correct Reason, pins letters and 0/1 codes (the CaLM wording has neither); without it
    inline labels are used and other nodes are lettered in topological order. Raises ValueError on unparsable text.
    """
    try:
        parsed = parse_problem(problem)
    except ParseError as e:
        raise ValueError(f"cannot corrupt a problem the template parser cannot read: {e}") from None
    g, facts = parsed.graph, parsed.facts
    try:
        sol = solve_query(g, parsed.query, facts)
        lacking = False
    except MissingFact:
        lacking = True
        sol = solve_query(g, parsed.query, _Default(facts))
    L, flips = align_reason(sol, g, reason or {}, parsed.values.letters)
    if flips:
        facts = _Flipped(facts, flips)
        sol = flip_codes(sol, flips)
    q = sol.query
    right = LACK_CONDITION if lacking else Answer(q.type, sol.prob, sol.answer).to_json()
    out = []

    def add(kind, s: Solution, answer: str | None = None, steps: dict | None = None):
        steps = steps or reason_steps(s, g, L)
        answer = answer or Answer(q.type, s.prob, s.answer).to_json()
        if answer != right and _differs(answer, right):
            out.append(Corruption(kind, steps, answer, KINDS[kind]))

    if lacking:
        add("fill_missing", sol)
        return out
    if not sol.cause:
        x, y = L[q.treatment], L[q.outcome]
        add("wrong_cause", sol, LACK_CONDITION, {"Step 1": _claimed_cause(q.type, x, y)})
        return out
    if q.type in EFFECT_TYPES:
        add("wrong_cause", Solution(q, cause=False, value=0.0))
    if q.type == "ETT":
        steps = reason_steps(sol, g, L)
        yes = "Yes" if sol.value >= 0.001 else "No"
        if abs(sol.value) >= 0.001:
            steps["Step 7"] = f"ETT={round4(sol.value):.4f}{'>0' if sol.value > 0 else '<0'} so the answer is {yes}."
        add("ett_convention", sol, Answer(q.type, sol.prob, yes).to_json(), steps)
        add("ett_sign", replace(sol, value=-sol.value), None, _ett_sign_steps(reason_steps(sol, g, L), sol.value))
    flipped = replace(q, x=1 - q.x)
    alt = _try(flipped, facts, sol.adjustment, sol.mediators)
    if alt is not None:
        add("swap_groups", alt)
    if sol.adjustment:
        z0 = tuple((z, 0) for z in sol.adjustment)
        alt = _try(q, _Stratum(facts, z0), (), sol.mediators)
        if alt is not None:
            add("ignore_adjustment", alt)
        if len(sol.adjustment) == 1 and q.type in ("ATE", "CDE", "NDE", "NIE", "PN", "PS"):
            alt = _try(q, _SwapMarginal(facts, sol.adjustment[0]), sol.adjustment, sol.mediators)
            if alt is not None:
                add("swap_weights", alt)
    rng = random.Random(repr(problem))
    slip = round4(sol.value + rng.choice([-1, 1]) * rng.uniform(0.02, 0.25))
    if q.type in ("PN", "PS"):
        slip = min(1.0, max(0.0, slip))
    add("arithmetic_slip", replace(sol, value=slip))
    if q.type in ("PN", "PS"):
        raw = _raw_ratio(q, facts, sol)
        if raw is not None and not 0.0 <= raw <= 1.0:
            steps = reason_steps(sol, g, L)
            steps["Step 2"] = steps["Step 2"].rsplit("\n", 1)[0] + f"\n={round4(raw):.4f}"
            add("no_clamp", replace(sol, value=raw), None, steps)
    steps = reason_steps(sol, g, L)
    first = {k: steps[k] for k in list(steps)[:4]}
    first[list(first)[-1]] += " The needed probabilities are not all given."
    add("false_lack", sol, LACK_CONDITION, first)
    return out


def corrupt(problem: str, reason: dict | None = None, *, seed: int = 0, kinds=None) -> Corruption:
    """One corruption, chosen by `seed` among the applicable `kinds` (default: all of KINDS)."""
    options = [c for c in corruptions(problem, reason) if kinds is None or c.kind in kinds]
    if not options:
        raise ValueError(f"no corruption of kinds {kinds or sorted(KINDS)} applies to this problem")
    return random.Random(seed).choice(options)


# ----------------------------------------------------------------------------------------------- helpers
def _differs(a: str, b: str) -> bool:
    if LACK_CONDITION in (a, b):
        return True
    ja, jb = json.loads(a), json.loads(b)
    return abs(float(ja["PROB"]) - float(jb["PROB"])) >= 0.0005 or ja.get("ANSWER") != jb.get("ANSWER")


def _top_split(expr: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split at `sep` outside (), [] and {}."""
    out, depth, cur = [], 0, ""
    for ch in expr:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == sep and depth == 0 and (maxsplit < 0 or len(out) < maxsplit):
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def _swap_diff(expr: str) -> str:
    a, b = _top_split(expr, "-", 1)
    return f"{b}-{a}"


def _ett_sign_steps(steps: dict, value: float) -> dict:
    """The right ETT Reason rewritten as counterfactual minus factual."""
    steps = dict(steps)
    expect, rest = steps["Step 4"][len("ETT="):].split("]=", 1)
    m = re.fullmatch(r"E\[(\w)_\{(\w=\d)\}-\w_\{(\w=\d)\}\|(\w=\d)", expect)
    if m is None:
        raise ValueError(f"unexpected ETT Step 4 {steps['Step 4']!r}")
    y, xf, xcf, cond = m.groups()
    swapped = "=".join(_swap_diff(r) for r in _top_split(rest, "="))
    steps["Step 4"] = f"ETT=E[{y}_{{{xcf}}}-{y}_{{{xf}}}|{cond}]={swapped}"
    body = steps["Step 6"][len("ETT="):].rsplit("=", 1)[0]
    steps["Step 6"] = f"ETT={_swap_diff(body)}={round4(-value):.4f}"
    steps["Step 7"] = step7("ETT", -value)
    return steps


def _try(q: Query, p, Z, M) -> Solution | None:
    try:
        val, terms, do = evaluate(q, p, Z, M)
    except (MissingFact, ZeroDivisionError):
        return None
    return Solution(q, True, tuple(M), tuple(Z), val, terms, do)


def _raw_ratio(q: Query, p, sol: Solution) -> float | None:
    X, Y, x, y = q.treatment, q.outcome, q.x, q.y
    den = p(Term(((X, 1 - x), (Y, 1 - y))))
    if q.bound == "upper":
        return (sol.do_value - p(Term(((X, x), (Y, y))))) / den
    return (p(Term(((Y, 1 - y),))) - sol.do_value) / den


def _claimed_cause(qtype: str, x: str, y: str) -> str:
    if qtype in ("ATE", "ETT"):
        return (f"Check whether treatment ({x}) is a cause of outcome ({y}). Node {x} is a cause of node {y} because "
                f"there is one or more directed paths from {x} to {y} (e.g. {x}->{y}). The needed probabilities are "
                f"not given.")
    if qtype == "NIE":
        return (f"Check whether there is an indirect connect between treatment ({x}) and outcome ({y}). There exists "
                f"directed path(s) with three or more vertices from {x} to {y}. "
                f"The needed probabilities are not given.")
    return (f"Check whether there is an edge from treatment ({x}) to outcome ({y}). The edge {x}->{y} exists. "
            f"The needed probabilities are not given.")


class _Default:
    """Facts where anything missing reads as 0.5 (the `fill_missing` mistake)."""

    def __init__(self, facts):
        self.facts = facts

    def __call__(self, term):
        v = self.facts.get(term)
        return 0.5 if v is None else v


class _Flipped:
    def __init__(self, facts, flips):
        self.facts, self.flips = facts, set(flips)

    def _f(self, assign):
        return tuple((n, 1 - v if n in self.flips else v) for n, v in assign)

    def get(self, term):
        return self.facts.get(Term(self._f(term.target), self._f(term.given)))

    def __call__(self, term):
        v = self.get(term)
        if v is None:
            raise MissingFact(term)
        return v


class _Stratum:
    """Unadjusted terms read from the first stratum of Z (the `ignore_adjustment` mistake)."""

    def __init__(self, facts, z0):
        self.facts, self.z0 = facts, z0

    def __call__(self, term):
        v = self.facts.get(term)
        if v is None:
            v = self.facts.get(Term(term.target, (*term.given, *self.z0)))
        if v is None:
            raise MissingFact(term)
        return v


class _SwapMarginal:
    """P(Z=z) read as P(Z=1-z) (the `swap_weights` mistake)."""

    def __init__(self, facts, z):
        self.facts, self.z = facts, z

    def __call__(self, term):
        if not term.given and len(term.target) == 1 and term.target[0][0] == self.z:
            term = term.complement()
        v = self.facts.get(term)
        if v is None:
            raise MissingFact(term)
        return v

