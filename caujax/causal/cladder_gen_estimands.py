"""CLadder's ten graph templates and, for each (query type, graph), the given probabilities and the estimand.

Templates, node labels (X, Y, V1-V3), edge order and the query types asked on each graph follow the CLadder v1.5
release (Jin et al., NeurIPS 2023). The estimands are the identification formulas of Pearl's "Causality" (2009):
the adjustment formula (backdoor, eq. 3.19), the front-door formula (eq. 3.29), the effect of treatment on the treated
by adjustment (Shpitser & Pearl 2009), Pearl's mediation formula for natural direct/indirect effects (Pearl 2001),
and the Wald ratio for an instrument (exact here because the generator keeps P(Y | X, V1) additive in X and V1).

Three of the release's estimands are not identification formulas, and this module writes correct ones instead:
ETT on `confounding` (the release weighs strata by P(V1), ETT needs P(V1 | X = 1)), NDE/NIE on `arrowhead` (the
release uses P(Y | X, V3) although V2 confounds V3 and Y; Pearl's mediation formula must condition on V2), and
`exp_away` (the release weighs P(Y | X, V3 = 1) by P(X); the sign of P(Y | X = 1, V3 = 1) - P(Y | V3 = 1) is the
sign of P(Y | X = 1, V3 = 1) - P(Y | X = 0, V3 = 1) whatever the weights, which needs no weights at all).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from caujax.causal.scm import CausalGraph


@dataclass(frozen=True)
class Template:
    """order: CLadder's "Let ..." order. said: (cause, effects) in the order the graph sentences list them.
    det: (node, parents in wording order) of the deterministic stories. hidden: the node CLadder calls unobserved."""

    order: tuple
    edges: tuple
    said: tuple
    det: tuple
    hidden: str | None = None

    @property
    def graph(self) -> CausalGraph:
        return CausalGraph(self.order, self.edges)

    @property
    def roots(self) -> list[str]:
        """Evidence nodes of a deterministic counterfactual: every parentless node but X, in "Let" order."""
        return [n for n in self.order if n != "X" and not any(b == n for _, b in self.edges)]


def _t(order, edges, said, det, hidden=None) -> Template:
    e = tuple(tuple(s.split("->")) for s in edges.split(","))
    return Template(tuple(order.split()), e, said, det, hidden)


TEMPLATES = {
    "chain": _t("X V2 Y", "X->V2,V2->Y", (("X", ("V2",)), ("V2", ("Y",))), (("V2", ("X",)), ("Y", ("V2",)))),
    "fork": _t("V2 X Y", "X->Y,V2->Y", (("X", ("Y",)), ("V2", ("Y",))), (("Y", ("X", "V2")),)),
    "collision": _t("Y X V3", "X->V3,Y->V3", (("X", ("V3",)), ("Y", ("V3",))), (("V3", ("X", "Y")),)),
    "confounding": _t("V1 X Y", "V1->X,V1->Y,X->Y", (("V1", ("X", "Y")), ("X", ("Y",))),
                      (("X", ("V1",)), ("Y", ("V1", "X")))),
    "mediation": _t("X V2 Y", "X->V2,X->Y,V2->Y", (("X", ("V2", "Y")), ("V2", ("Y",))),
                    (("V2", ("X",)), ("Y", ("X", "V2")))),
    "frontdoor": _t("V1 X V3 Y", "V1->X,X->V3,V1->Y,V3->Y", (("V1", ("X", "Y")), ("X", ("V3",)), ("V3", ("Y",))),
                    (("X", ("V1",)), ("V3", ("X",)), ("Y", ("V1", "V3"))), "V1"),
    "IV": _t("V2 V1 X Y", "V1->X,V2->X,V1->Y,X->Y", (("V1", ("X", "Y")), ("V2", ("X",)), ("X", ("Y",))),
             (("X", ("V1", "V2")), ("Y", ("V1", "X"))), "V1"),
    "arrowhead": _t("V2 X V3 Y", "X->V3,V2->V3,X->Y,V2->Y,V3->Y",
                    (("X", ("V3", "Y")), ("V2", ("V3", "Y")), ("V3", ("Y",))),
                    (("V3", ("X", "V2")), ("Y", ("X", "V2", "V3"))), "V2"),
    "diamond": _t("X V3 V2 Y", "X->V3,X->V2,V2->Y,V3->Y", (("X", ("V3", "V2")), ("V2", ("Y",)), ("V3", ("Y",))),
                  (("V2", ("X",)), ("V3", ("X",)), ("Y", ("V2", "V3")))),
    "diamondcut": _t("V1 V3 X Y", "V1->V3,V1->X,X->Y,V3->Y", (("V1", ("V3", "X")), ("X", ("Y",)), ("V3", ("Y",))),
                     (("X", ("V1",)), ("V3", ("V1",)), ("Y", ("X", "V3")))),
}


class Term(NamedTuple):
    """A given number: P(target = 1 | conds) ("p"), or P(X = x, Y = 1) ("joint", conds = (("X", x),))."""

    kind: str
    target: str
    conds: tuple

    @property
    def key(self) -> str:
        if self.kind == "joint":
            return f"P(X={self.conds[0][1]}, Y=1)"
        given = ", ".join(f"{n}={v}" for n, v in self.conds)
        return f"P({self.target}=1 | {given})" if given else f"P({self.target}=1)"


def p(target: str, **conds) -> Term:
    return Term("p", target, tuple(conds.items()))


class Estimand(NamedTuple):
    """value(g) and text(g) read g[term] (floats, or numpy arrays for the rounding check); the answer is the side
    of `threshold` that value falls on."""

    givens: tuple
    formula: str
    value: Callable
    text: Callable
    threshold: float = 0.0


def n2(x) -> str:
    return f"{x:.2f}"


def _x_only() -> Estimand:
    """X has no parents on these graphs, so E[Y | do(X = x)] = P(Y = 1 | X = x) (and ETT = ATE)."""
    y0, y1 = p("Y", X=0), p("Y", X=1)
    return Estimand((y0, y1), "P(Y=1 | X=1) - P(Y=1 | X=0)", lambda g: g[y1] - g[y0],
                    lambda g: f"{n2(g[y1])} - {n2(g[y0])}")


def _backdoor(z: str, treated: bool, z_first: bool) -> Estimand:
    """ATE = sum_z P(z) [P(Y | X=1, z) - P(Y | X=0, z)] (Pearl eq. 3.19); ETT weighs by P(z | X = 1) instead."""
    def y(x, v):
        return p("Y", **({z: v, "X": x} if z_first else {"X": x, z: v}))
    ys = [y(x, v) for x, v in ((0, 0), (1, 0), (0, 1), (1, 1))] if z_first else \
        [y(x, v) for x, v in ((0, 0), (0, 1), (1, 0), (1, 1))]
    w = (p(z, X=0), p(z, X=1)) if treated else (p(z),)
    w1 = w[-1]
    inner = f"P(Y=1|{z}=v,X=1) - P(Y=1|{z}=v,X=0)" if z_first else f"P(Y=1|X=1,{z}=v) - P(Y=1|X=0,{z}=v)"
    weight = f"P({z}=v|X=1)" if treated else f"P({z}=v)"

    def value(g):
        return (1 - g[w1]) * (g[y(1, 0)] - g[y(0, 0)]) + g[w1] * (g[y(1, 1)] - g[y(0, 1)])

    def text(g):
        return (f"{n2(1 - g[w1])} * ({n2(g[y(1, 0)])} - {n2(g[y(0, 0)])}) + "
                f"{n2(g[w1])} * ({n2(g[y(1, 1)])} - {n2(g[y(0, 1)])})")
    return Estimand(tuple(ys) + w, f"\\sum_{{{z}=v}} {weight}*[{inner}]", value, text)


def _frontdoor(treated: bool) -> Estimand:
    """ATE = sum_m [P(m | X=1) - P(m | X=0)] sum_x' P(Y | x', m) P(x') (Pearl eq. 3.29); ETT = sum_m P(Y | X=1, m)
    [P(m | X=1) - P(m | X=0)] (Shpitser & Pearl 2009). NIE on this graph is the ATE: no edge X->Y."""
    m0, m1 = p("V3", X=0), p("V3", X=1)
    y = {(x, m): p("Y", X=x, V3=m) for x in (0, 1) for m in (0, 1)}
    px = p("X")
    if treated:
        return Estimand(tuple(y.values()) + (m0, m1),
                        "\\sum_{V3=v} P(Y=1|X=1,V3=v)*[P(V3=v|X=1) - P(V3=v|X=0)]",
                        lambda g: (g[m1] - g[m0]) * (g[y[1, 1]] - g[y[1, 0]]),
                        lambda g: f"({n2(g[m1])} - {n2(g[m0])}) * ({n2(g[y[1, 1]])} - {n2(g[y[1, 0]])})")

    def mix(g, m):
        return g[y[1, m]] * g[px] + g[y[0, m]] * (1 - g[px])

    def text(g):
        def t(m):
            return f"({n2(g[y[1, m]])} * {n2(g[px])} + {n2(g[y[0, m]])} * {n2(1 - g[px])})"
        return f"({n2(g[m1])} - {n2(g[m0])}) * ({t(1)} - {t(0)})"
    return Estimand((m0, m1) + tuple(y.values()) + (px,),
                    "\\sum_{V3=v} [P(V3=v|X=1) - P(V3=v|X=0)] * [\\sum_{X=h} P(Y=1|X=h,V3=v)*P(X=h)]",
                    lambda g: (g[m1] - g[m0]) * (mix(g, 1) - mix(g, 0)), text)


def _wald() -> Estimand:
    """[P(Y | V2=1) - P(Y | V2=0)] / [P(X | V2=1) - P(X | V2=0)]: the instrumental-variable (Wald) estimand."""
    y0, y1, x0, x1 = p("Y", V2=0), p("Y", V2=1), p("X", V2=0), p("X", V2=1)
    return Estimand((y0, y1, x0, x1), "[P(Y=1|V2=1)-P(Y=1|V2=0)]/[P(X=1|V2=1)-P(X=1|V2=0)]",
                    lambda g: (g[y1] - g[y0]) / (g[x1] - g[x0]),
                    lambda g: f"({n2(g[y1])} - {n2(g[y0])}) / ({n2(g[x1])} - {n2(g[x0])})")


def _mediation(kind: str) -> Estimand:
    """Pearl's mediation formula (2001) with mediator V2: NDE = sum_m P(m | X=0) [P(Y | 1, m) - P(Y | 0, m)],
    NIE = sum_m P(Y | X=0, m) [P(m | X=1) - P(m | X=0)]."""
    y = {(x, m): p("Y", X=x, V2=m) for x in (0, 1) for m in (0, 1)}
    m0, m1 = p("V2", X=0), p("V2", X=1)
    givens = tuple(y.values()) + (m0, m1)
    if kind == "nde":
        return Estimand(givens, "\\sum_{V2=v} P(V2=v|X=0)*[P(Y=1|X=1,V2=v) - P(Y=1|X=0,V2=v)]",
                        lambda g: (1 - g[m0]) * (g[y[1, 0]] - g[y[0, 0]]) + g[m0] * (g[y[1, 1]] - g[y[0, 1]]),
                        lambda g: f"{n2(1 - g[m0])} * ({n2(g[y[1, 0]])} - {n2(g[y[0, 0]])}) + "
                                  f"{n2(g[m0])} * ({n2(g[y[1, 1]])} - {n2(g[y[0, 1]])})")
    return Estimand(givens, "\\sum_{V2=v} P(Y=1|X=0,V2=v)*[P(V2=v|X=1) - P(V2=v|X=0)]",
                    lambda g: (g[m1] - g[m0]) * (g[y[0, 1]] - g[y[0, 0]]),
                    lambda g: f"({n2(g[m1])} - {n2(g[m0])}) * ({n2(g[y[0, 1]])} - {n2(g[y[0, 0]])})")


def _arrowhead(kind: str) -> Estimand:
    """Pearl's mediation formula with V2 (it confounds the mediator V3 and Y, and X does not affect it) as the
    covariate: NDE = sum_k P(k) sum_m P(m | X=0, k) [P(Y | 1, m, k) - P(Y | 0, m, k)],
    NIE = sum_k P(k) sum_m P(Y | X=0, m, k) [P(m | X=1, k) - P(m | X=0, k)]."""
    xs = (0, 1) if kind == "nde" else (0,)
    y = {(x, m, k): p("Y", X=x, V3=m, V2=k) for x in xs for m in (0, 1) for k in (0, 1)}
    med = {(x, k): p("V3", X=x, V2=k) for x in (0, 1) for k in (0, 1)}
    w = p("V2")

    def wk(g, k):
        return g[w] if k else 1 - g[w]
    if kind == "nde":
        def value(g):
            return sum(wk(g, k) * ((1 - g[med[0, k]]) * (g[y[1, 0, k]] - g[y[0, 0, k]])
                                   + g[med[0, k]] * (g[y[1, 1, k]] - g[y[0, 1, k]])) for k in (0, 1))

        def text(g):
            return " + ".join(f"{n2(wk(g, k))} * ({n2(1 - g[med[0, k]])} * ({n2(g[y[1, 0, k]])} - "
                              f"{n2(g[y[0, 0, k]])}) + {n2(g[med[0, k]])} * ({n2(g[y[1, 1, k]])} - "
                              f"{n2(g[y[0, 1, k]])}))" for k in (0, 1))
        formula = ("\\sum_{V2=k} P(V2=k) * \\sum_{V3=v} P(V3=v|X=0,V2=k)*"
                   "[P(Y=1|X=1,V3=v,V2=k) - P(Y=1|X=0,V3=v,V2=k)]")
        givens = tuple(y.values()) + (med[0, 0], med[0, 1], w)
    else:
        def value(g):
            return sum(wk(g, k) * (g[med[1, k]] - g[med[0, k]]) * (g[y[0, 1, k]] - g[y[0, 0, k]]) for k in (0, 1))

        def text(g):
            return " + ".join(f"{n2(wk(g, k))} * ({n2(g[med[1, k]])} - {n2(g[med[0, k]])}) * "
                              f"({n2(g[y[0, 1, k]])} - {n2(g[y[0, 0, k]])})" for k in (0, 1))
        formula = ("\\sum_{V2=k} P(V2=k) * \\sum_{V3=v} P(Y=1|X=0,V3=v,V2=k)*"
                   "[P(V3=v|X=1,V2=k) - P(V3=v|X=0,V2=k)]")
        givens = tuple(y.values()) + tuple(med.values()) + (w,)
    return Estimand(givens, formula, value, text)


def _marginal() -> Estimand:
    """P(Y = 1) = sum_x P(Y = 1 | x) P(x), compared with 1/2."""
    px, y0, y1 = p("X"), p("Y", X=0), p("Y", X=1)
    return Estimand((px, y0, y1), "P(Y=1 | X=1)*P(X=1) + P(Y=1 | X=0)*P(X=0)",
                    lambda g: g[px] * g[y1] + (1 - g[px]) * g[y0],
                    lambda g: f"{n2(g[px])} * {n2(g[y1])} + {n2(1 - g[px])} * {n2(g[y0])}", 0.5)


def _correlation() -> Estimand:
    """P(Y = 1 | X = 1) - P(Y = 1 | X = 0) from P(X = 1) and the joint P(X = x, Y = 1)."""
    px, j0, j1 = p("X"), Term("joint", "Y", (("X", 0),)), Term("joint", "Y", (("X", 1),))
    return Estimand((px, j0, j1), "P(X=1, Y=1)/P(X=1) - P(X=0, Y=1)/P(X=0)",
                    lambda g: g[j1] / g[px] - g[j0] / (1 - g[px]),
                    lambda g: f"{n2(g[j1])}/{n2(g[px])} - {n2(g[j0])}/{n2(1 - g[px])}")


def _explaining_away() -> Estimand:
    """P(Y | V3=1) is a mixture of P(Y | X=0, V3=1) and P(Y | X=1, V3=1), so P(Y | X=1, V3=1) - P(Y | V3=1) =
    P(X=0 | V3=1) [P(Y | X=1, V3=1) - P(Y | X=0, V3=1)]: same sign as the plain difference."""
    y = {(x, c): p("Y", X=x, V3=c) for x in (0, 1) for c in (0, 1)}
    return Estimand((p("X"),) + tuple(y.values()),
                    "P(Y=1 | V3=1) mixes P(Y=1 | X=0, V3=1) and P(Y=1 | X=1, V3=1), so the sign is that of "
                    "P(Y=1 | X=1, V3=1) - P(Y=1 | X=0, V3=1)",
                    lambda g: g[y[1, 1]] - g[y[0, 1]], lambda g: f"{n2(g[y[1, 1]])} - {n2(g[y[0, 1]])}")


_BACKDOOR_GRAPHS = ("confounding", "diamondcut")
_X_ROOT = ("chain", "fork", "mediation", "arrowhead", "diamond")
_NO_COLLISION = tuple(TEMPLATES.keys() - {"collision"})

ESTIMANDS = {("marginal", g): _marginal() for g in TEMPLATES}
ESTIMANDS.update({("correlation", g): _correlation() for g in _NO_COLLISION})
ESTIMANDS[("exp_away", "collision")] = _explaining_away()
ESTIMANDS.update({("ate", g): _x_only() for g in _X_ROOT})
ESTIMANDS.update({("ate", "confounding"): _backdoor("V1", False, True),
                  ("ate", "diamondcut"): _backdoor("V1", False, True),
                  ("ate", "frontdoor"): _frontdoor(False), ("ate", "IV"): _wald()})
ESTIMANDS.update({("ett", g): _x_only() for g in _X_ROOT})
ESTIMANDS.update({("ett", "confounding"): _backdoor("V1", True, True),
                  ("ett", "diamondcut"): _backdoor("V3", True, False), ("ett", "frontdoor"): _frontdoor(True)})
ESTIMANDS.update({("nie", "chain"): _x_only(), ("nie", "diamond"): _x_only(), ("nie", "frontdoor"): _frontdoor(False),
                  ("nie", "mediation"): _mediation("nie"), ("nie", "arrowhead"): _arrowhead("nie"),
                  ("nde", "mediation"): _mediation("nde"), ("nde", "arrowhead"): _arrowhead("nde")})

# Which query types the release asks on which graph (ETT is not identified on IV; NDE needs an X->Y edge and
# a mediator; NIE a mediator; collider_bias and exp_away need the collider).
ASKED = set(ESTIMANDS) | {("backadj", g) for g in TEMPLATES} | {("collider_bias", "collision")} \
    | {("det-counterfactual", g) for g in _NO_COLLISION}

# CLadder's formal forms; collider_bias says what its answer rests on: X has no effect on Y among V3 = 1.
MEDIATORS = {"chain": ("V2",), "mediation": ("V2",), "frontdoor": ("V3",), "arrowhead": ("V3",),
             "diamond": ("V2", "V3")}


def formal_form(query_type: str, graph: str) -> str:
    if query_type in ("nde", "nie"):
        ms = MEDIATORS[graph]
        on, off = ", ".join(f"{m}=1" for m in ms), ", ".join(f"{m}=0" for m in ms)
        if query_type == "nie":
            return f"E[Y_{{X=0, {on}}} - Y_{{X=0, {off}}}]"
        return f"E[Y_{{X=1, {off}}} - Y_{{X=0, {off}}}]"
    return {"marginal": "P(Y)", "correlation": "P(Y | X)",
            "exp_away": "P(Y = 1 | X = 1, V3 = 1) - P(Y = 1 | V3 = 1)",
            "ate": "E[Y | do(X = 1)] - E[Y | do(X = 0)]", "ett": "E[Y_{X = 1} - Y_{X = 0} | X = 1]",
            "collider_bias": "E[Y_{X = 1} - Y_{X = 0} | V3 = 1]",
            "backadj": "[backdoor adjustment set for Y given X]"}[query_type]


def corners(k: int) -> np.ndarray:
    """All 2^k sign patterns, shape (2^k, k)."""
    return ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1) * 2 - 1


def robust_side(est: Estimand, percents: dict, spread: float = 0.1) -> int:
    """+1 / -1 when the estimand lies above / below its threshold for every value the givens could have had before
    rounding to whole percent (each within +-0.005), 0 when rounding alone could move it across.

    Every estimand here is multilinear in the givens or, for the two ratios, monotone in each given separately, so
    its extremes over that box lie at the box's corners, which are all checked. Also 0 when those extremes are more
    than `spread` apart: the printed value would say little (a weak instrument's Wald ratio).
    """
    c = corners(len(est.givens)) * 0.005
    g = {t: percents[t] / 100 + c[:, i] for i, t in enumerate(est.givens)}
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.asarray(est.value(g), dtype=float) - est.threshold
    if not np.all(np.isfinite(v)) or v.max() - v.min() > spread:
        return 0
    if np.all(v > 0):
        return 1
    if np.all(v < 0):
        return -1
    return 0
