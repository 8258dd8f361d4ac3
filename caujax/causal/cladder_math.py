"""The rung 1-3 quantities of CLadder (Jin et al., NeurIPS 2023) from given conditionals, as intervals.

CLadder prints every probability rounded to the percent, so each given number p stands for [p - 0.005, p + 0.005].
The formulas here are monotone in each input separately (multilinear, or a ratio whose denominator keeps its sign),
so their exact range over that box is reached at its corners. `Inputs` gives each printed number its own numpy
axis holding (p, p - 0.005, p + 0.005); arithmetic broadcasts to every corner at once, index 0 on every axis is the
value at the printed numbers, and the min/max of a result is the range of the true value. A probability the text
does not give but a formula needs as a weight (P(z | x) in the ETT when only P(y | x, z) and P(z) are given) enters
as an unknown on [0, 1], so the range also covers every model the text allows. (`confounded_mediation` is the one
non-monotone formula; its range is taken over the same points, exact in the unknowns and at the corners.)

Formulas (Pearl, "Causality", 2nd ed. 2009, and Pearl 2001 "Direct and indirect effects"):
  backdoor   E[Y | do(x)]       = sum_z P(z) P(y | x, z)                                     (eq. 3.19)
  front-door E[Y | do(x)]       = sum_m P(m | x) sum_x' P(y | x', m) P(x')                    (eq. 3.29)
  IV (Wald)  ATE                = [P(y | z=1) - P(y | z=0)] / [P(x | z=1) - P(x | z=0)]      (CLadder's estimand)
  ETT        E[Y_x' | X=x]      = sum_z P(z | x) P(y | x', z)   (backdoor; Shpitser & Pearl 2009)
             front-door          = sum_m P(m | x') P(y | x, m)
  NDE (x=0 baseline)            = sum_m P(m | x=0) [P(y | 1, m) - P(y | 0, m)]                (mediation formula)
  NIE                           = sum_m P(y | 0, m) [P(m | 1) - P(m | 0)]
"""
from __future__ import annotations

import numpy as np

MAX_AXES = 24              # printed numbers plus unknown weights one formula may combine (CLadder: 9 at most)
NEAR_ZERO = 0.005           # CLadder answers "no" when |effect| < 0.005 (queries/*.py: `abs(lb) < 0.005`)


class Missing(LookupError):
    """A formula needs a probability the text does not give."""


class Inputs:
    """One numpy axis per interval input; `interval` returns an array broadcastable against all the others."""

    def __init__(self):
        self.n = 0

    def interval(self, point: float, lo: float, hi: float, axis: int | None = None) -> np.ndarray:
        """Values (point, lo, hi) along one axis: index 0 everywhere is the point estimate, the rest the corners."""
        if axis is None:
            axis, self.n = self.n, self.n + 1
        if axis >= MAX_AXES:
            raise Missing("too many interval inputs")
        shape = [1] * MAX_AXES
        shape[axis] = 3
        return np.array([point, lo, hi], dtype=np.float64).reshape(shape)

    def given(self, p: float, half: float) -> np.ndarray:
        return self.interval(p, max(0.0, p - half), min(1.0, p + half))


class Facts:
    """P(node = 1 | cond) arrays keyed by (node, frozenset of (node, value)); `weight` hands out [0, 1] unknowns
    for conditionals the text does not give."""

    def __init__(self, inputs: Inputs, table: dict):
        self.inputs, self.table, self.unknowns = inputs, table, []

    def has(self, node: str, cond: dict) -> bool:
        return (node, frozenset(cond.items())) in self.table

    def p(self, node: str, value: int, cond: dict | None = None) -> np.ndarray:
        a = self.table.get((node, frozenset((cond or {}).items())))
        if a is None:
            raise Missing(f"P({node} | {cond or {}})")
        return a if value == 1 else 1.0 - a

    def weight(self, node: str, value: int, cond: dict) -> np.ndarray:
        """P(node = value | cond) if given, else an unknown on [0, 1] (shared by both values: w and 1 - w)."""
        if self.has(node, cond):
            return self.p(node, value, cond)
        key = (node, frozenset(cond.items()))
        for k, a in self.unknowns:
            if k == key:
                return a if value == 1 else 1.0 - a
        a = self.inputs.interval(0.5, 0.0, 1.0, axis=self.inputs.n + len(self.unknowns))
        self.unknowns.append((key, a))
        return a if value == 1 else 1.0 - a


def do_mean(f: Facts, x: str, y: str, xv: int, z: tuple) -> np.ndarray:
    """Backdoor adjustment E[Y | do(X = xv)] over the set z (one node at most: the joint P(z) is not given)."""
    if not z:
        return f.p(y, 1, {x: xv})
    if len(z) > 1:
        raise Missing("a joint distribution over several adjustment nodes")
    (w,) = z
    return sum(f.p(w, v) * f.p(y, 1, {x: xv, w: v}) for v in (0, 1))


def frontdoor_mean(f: Facts, x: str, y: str, m: str, xv: int) -> np.ndarray:
    return sum(f.p(m, mv, {x: xv}) * sum(f.p(y, 1, {x: h, m: mv}) * f.p(x, h) for h in (0, 1)) for mv in (0, 1))


def wald(f: Facts, x: str, y: str, z: str) -> np.ndarray:
    den = f.p(x, 1, {z: 1}) - f.p(x, 1, {z: 0})
    if den.min() <= 0.0 <= den.max():
        raise Missing(f"the instrument's effect on the treatment may be 0 (P({x} | {z}) differ by too little)")
    return (f.p(y, 1, {z: 1}) - f.p(y, 1, {z: 0})) / den


def ett_mean(f: Facts, x: str, y: str, t: int, xv: int, z: tuple) -> np.ndarray:
    """E[Y_{X=xv} | X = t] by backdoor set z (one node at most); P(z | x) unknown on [0, 1] if not given."""
    if not z:
        return f.p(y, 1, {x: xv})
    if len(z) > 1:
        raise Missing("a joint distribution over several adjustment nodes")
    (w,) = z
    return sum(f.weight(w, v, {x: t}) * f.p(y, 1, {x: xv, w: v}) for v in (0, 1))


def ett_frontdoor(f: Facts, x: str, y: str, m: str, t: int, xv: int) -> np.ndarray:
    return sum(f.p(m, mv, {x: xv}) * f.p(y, 1, {x: t, m: mv}) for mv in (0, 1))


def nde(f: Facts, x: str, y: str, m: str) -> np.ndarray:
    return sum(f.p(m, v, {x: 0}) * (f.p(y, 1, {x: 1, m: v}) - f.p(y, 1, {x: 0, m: v})) for v in (0, 1))


def nie(f: Facts, x: str, y: str, m: str) -> np.ndarray:
    return sum(f.p(y, 1, {x: 0, m: v}) * (f.p(m, v, {x: 1}) - f.p(m, v, {x: 0})) for v in (0, 1))


def confounded_mediation(f: Facts, x: str, y: str, m: str, w: str, kind: str):
    """Bounds on Pearl's NDE / NIE when W confounds M -> Y and the text gives P(w), P(m | x, w) and P(y | x, m)
    but not P(y | x, m, w) (CLadder's arrowhead graph). With q(x,m,w) = P(y | x, m, w) unknown,
        NDE = sum_w P(w) sum_m P(m | 0, w) [q(1,m,w) - q(0,m,w)],
        NIE = sum_w P(w) sum_m [P(m | 1, w) - P(m | 0, w)] q(0,m,w),
    subject to sum_w P(w | x, m) q(x,m,w) = P(y | x, m) and 0 <= q <= 1 (Pearl 2001's mediation formula with a
    covariate, Causality 2nd ed. sec. 4.5). Each (x, m) constraint leaves q(x,m,.) on a segment and the effect is
    linear in q, so its extremes add up segment by segment at the segment ends. Returns (point, low, high) arrays:
    `point` the middle of the bounds."""
    lo_total, hi_total = 0.0, 0.0
    for xv in (0, 1):
        for mv in (0, 1):
            pw = [f.p(w, k) for k in (0, 1)]
            joint = [f.p(m, mv, {x: xv, w: k}) * pw[k] for k in (0, 1)]
            tot = joint[0] + joint[1]
            wt = [np.where(tot > 1e-12, joint[k] / np.maximum(tot, 1e-12), 0.5) for k in (0, 1)]
            py = f.p(y, 1, {x: xv, m: mv})
            if kind == "nde":
                c = [(1.0 if xv == 1 else -1.0) * pw[k] * f.p(m, mv, {x: 0, w: k}) for k in (0, 1)]
            else:
                c = [(pw[k] * (f.p(m, mv, {x: 1, w: k}) - f.p(m, mv, {x: 0, w: k})) if xv == 0 else 0.0 * pw[k])
                     for k in (0, 1)]
            ends = []
            for s in _segment_ends(py, wt[0], wt[1]):
                q0, q1 = s
                ends.append(c[0] * q0 + c[1] * q1)
            lo_total = lo_total + np.minimum(*ends)
            hi_total = hi_total + np.maximum(*ends)
    return (lo_total + hi_total) / 2.0, lo_total, hi_total


def _segment_ends(p, w0, w1):
    """End points (q0, q1) of {w0 q0 + w1 q1 = p, 0 <= q0, q1 <= 1}, w0 + w1 = 1 (a weight near 0 frees its q)."""
    safe1, safe0 = np.maximum(w1, 1e-12), np.maximum(w0, 1e-12)
    a_lo = np.clip((p - w0) / safe1, 0.0, 1.0)           # q1's range
    a_hi = np.clip(p / safe1, 0.0, 1.0)
    a_hi = np.maximum(a_lo, a_hi)
    free1 = w1 < 1e-9
    q1_lo, q1_hi = np.where(free1, 0.0, a_lo), np.where(free1, 1.0, a_hi)
    q0 = [np.where(w0 < 1e-9, np.where(k == 0, 0.0, 1.0), np.clip((p - w1 * q) / safe0, 0.0, 1.0))
          for k, q in enumerate((q1_lo, q1_hi))]
    return [(q0[0], q1_lo), (q0[1], q1_hi)]


def span(a) -> tuple[float, float, float]:
    """(point estimate at the printed numbers, min, max) of a result array, or of a (point, low, high) triple."""
    if isinstance(a, tuple):
        point, lo, hi = (np.asarray(v, dtype=np.float64) for v in a)
        return float(point.flat[0]), float(lo.min()), float(hi.max())
    a = np.asarray(a, dtype=np.float64)
    return float(a.flat[0]), float(a.min()), float(a.max())


def effect_class(v: float) -> int:
    """CLadder's three outcomes of a signed effect: +1, -1, or 0 when |v| < 0.005 (answered "no" either way)."""
    return 1 if v >= NEAR_ZERO else (-1 if v <= -NEAR_ZERO else 0)


def decide_effect(lo: float, hi: float, polarity: int) -> str | None:
    """'yes' iff the effect's class is `polarity` (+1 "increase"/"positively", -1 the opposite), for every value in
    [lo, hi]; None when the range holds values with different answers."""
    classes = range(effect_class(lo), effect_class(hi) + 1)
    answers = {"yes" if c == polarity else "no" for c in classes}
    return answers.pop() if len(answers) == 1 else None


def decide_sign(lo: float, hi: float, polarity: int) -> str | None:
    """Exact sign (explaining away has no near-zero band); None when 0 is inside [lo, hi]."""
    if lo > 0:
        return "yes" if polarity > 0 else "no"
    if hi < 0:
        return "yes" if polarity < 0 else "no"
    return None


def decide_above(lo: float, hi: float, threshold: float, polarity: int) -> str | None:
    """Is the value above (`polarity` +1) or below (-1) `threshold`, for every value in [lo, hi]."""
    return decide_sign(lo - threshold, hi - threshold, polarity)
