"""CLadder questions answered from given probabilities (Jin et al., NeurIPS 2023): marginal, correlation and
explaining away (rung 1), ATE (rung 2), ETT, NDE and NIE (rung 3).

Each handler returns (answer, value, derivation) or raises Abstain. The yes/no rules are CLadder's
(`causalbenchmark/queries/*.py`): an effect's answer is "yes" iff its sign matches the question's polarity and
|effect| >= 0.005, else "no"; P(Y=1) is compared with 0.5; explaining away uses the exact sign. Every value is a
range over the rounding of the printed percentages, and the answer stands only when it is the same over the range.
"""
from __future__ import annotations

import numpy as np

from caujax.causal.cladder_answer import Abstain, node_of
from caujax.causal.cladder_effects import ett_effect, natural_effect, total_effect
from caujax.causal.cladder_math import Inputs, Missing, decide_above, decide_effect, decide_sign, span
from caujax.causal.cladder_parse import JointPair, Prior, split_list
from caujax.causal.cladder_roles import NOUN, QNOUN, entities
from caujax.causal.cladder_search import noun_entity, population, search, treatment
from caujax.causal.cladder_words import value_of


def marginal(parsed, q):
    """"Is Y1 more/less likely than Y0 overall?": P(Y=1) = sum_v P(Y=1 | A=v) P(A=v) (law of total probability)
    against 0.5."""
    ents = entities(parsed.given)
    if (NOUN, q.parts["a"]) in ents:
        y, pol = q.parts["a"], q.polarity
    elif (NOUN, q.parts["b"]) in ents:
        y, pol = q.parts["b"], -q.polarity          # "Is Y0 more likely than Y1": the same comparison, turned
    else:
        raise Abstain(f"cannot parse: neither {q.parts['a']!r} nor {q.parts['b']!r} is a given outcome")

    def compute(m, f):
        yn = m[(NOUN, y)]
        out = []
        for a in parsed.graph.nodes:
            try:
                out.append((f"P({yn}=1) = sum_v P({yn}=1 | {a}=v) P({a}=v)",
                            sum(f.p(yn, 1, {a: v}) * f.p(a, v) for v in (0, 1))))
            except Missing:
                continue
        return (f"Y={yn}", out) if out else None

    return search(parsed, (), compute, lambda lo, hi: decide_above(lo, hi, 0.5, pol), "P(Y=1)",
                  f"asks whether P({y!r}) is {'above' if pol > 0 else 'below'} 0.5")


def _conditional(joint, marginal_):
    """P(B | A) = P(A, B) / P(A), kept inside [0, 1]: where the rounding lets P(A) reach 0 any value is possible."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(joint / np.maximum(marginal_, 1e-12), 0.0, 1.0)


def correlation(parsed, q):
    """"Is the chance of Y larger when observing X?": P(Y | X=1) - P(Y | X=0) from P(X=1) and P(X=x, Y=1)."""
    joints = [g for g in parsed.given if isinstance(g, JointPair)]
    priors = [g for g in parsed.given if isinstance(g, Prior)]
    if len(joints) != 1 or len(priors) != 1:
        raise Abstain("cannot parse: correlation needs one P(X) and one pair of joint probabilities")
    (j,), (pr,) = joints, priors
    if q.parts["y"] != j.second:
        raise Abstain(f"cannot parse: the outcome {q.parts['y']!r} is not the joint probabilities' outcome")
    t, px = value_of(q.parts["x"], j.first), value_of(pr.target, j.first)
    if t is None or px is None:
        raise Abstain(f"cannot tell which value of {j.first} the question or P({pr.target!r}) names")
    inputs = Inputs()
    p1 = inputs.given(pr.p, pr.half)
    p1 = p1 if px == 1 else 1.0 - p1
    j0, j1 = inputs.given(j.probs[0], j.half), inputs.given(j.probs[1], j.half)
    d = _conditional(j1, p1) - _conditional(j0, 1.0 - p1)
    point, lo, hi = span(d if t == 1 else -d)
    answer = decide_effect(lo, hi, q.polarity)
    what = f"P({q.parts['y']!r} | {q.parts['x']!r}) - P({q.parts['y']!r} | the other value)"
    if answer is None:
        raise Abstain(f"{what} is {point:+.4f}, in [{lo:+.4f}, {hi:+.4f}] over the rounding of the given numbers: "
                      f"the answer is not determined")
    return answer, round(point, 6), (f"{what} = {point:+.4f} (range [{lo:+.4f}, {hi:+.4f}] over the rounding of "
                                     f"the given numbers); {_rule(q.polarity, 'larger', 'smaller')}: {answer}")


def _rule(polarity: int, positive: str, negative: str, exact: bool = False) -> str:
    """The yes/no rule in words: CLadder answers "no" for |effect| < 0.005 except in explaining away."""
    word = positive if polarity > 0 else negative
    return f"the question asks '{word}': yes iff the value is {'>' if polarity > 0 else '<'} 0" + (
        "" if exact else " by at least 0.005")


def exp_away(parsed, q):
    """"If we look at C=c, does the chance of Y increase when X?": P(Y | X=1, c) - P(Y | c)
    = P(X=0 | c) [P(Y | X=1, c) - P(Y | X=0, c)], whose sign is that of the bracket (P(X | c) is not given)."""
    ents = entities(parsed.given)
    y = noun_entity(parsed, q.parts["y"], "outcome")
    ce, cv = population(ents, q.parts["c"])
    extra = () if (NOUN, q.parts["x"]) in ents else ((QNOUN, q.parts["x"]),)

    def compute(m, f):
        x, t = treatment(m, q.parts["x"], ents)
        yn, c = m[y], m[ce]
        if t is None or x in (yn, c):
            return None
        try:
            d = f.p(yn, 1, {x: t, c: cv}) - f.p(yn, 1, {x: 1 - t, c: cv})
        except Missing:
            return None
        return f"X={x} (value {t}), Y={yn}, C={c}={cv}", [("the sign of P(Y | X, C=c) - P(Y | C=c)", d)]

    return search(parsed, extra, compute, lambda lo, hi: decide_sign(lo, hi, q.polarity),
                  "P(Y | X=x, C=c) - P(Y | X=1-x, C=c)", _rule(q.polarity, "increase", "decrease", exact=True))


def ate(parsed, q):
    """"Will X increase the chance of Y?": E[Y | do(X=x)] - E[Y | do(X=1-x)] for the value x the question names."""
    ents = entities(parsed.given)
    y = noun_entity(parsed, q.parts["y"], "outcome")
    extra = () if (NOUN, q.parts["x"]) in ents else ((QNOUN, q.parts["x"]),)

    def compute(m, f):
        x, t = treatment(m, q.parts["x"], ents)
        yn = m[y]
        if t is None or x == yn:
            return None
        out = total_effect(parsed.graph, f, x, yn)
        return (f"X={x} (asked value {t}), Y={yn}", [(lbl, v if t == 1 else -v) for lbl, v in out]) if out else None

    return search(parsed, extra, compute, lambda lo, hi: decide_effect(lo, hi, q.polarity), "ATE",
                  _rule(q.polarity, "increase", "decrease"))


def ett(parsed, q):
    """"For X=t units, would Y be more likely had X been 1-t?": E[Y_{X=1-t} - Y_{X=t} | X=t] (CLadder's ETT with
    the sign turned: it asks about the counterfactual value)."""
    ents = entities(parsed.given)
    y = noun_entity(parsed, q.parts["y"], "outcome")
    xe, t = population(ents, q.parts["x"])

    def compute(m, f):
        x, yn = m[xe], m[y]
        out = ett_effect(parsed.graph, f, x, yn, t) if x != yn else []
        return (f"X={x}, units with X={t}, Y={yn}", out) if out else None

    return search(parsed, (), compute, lambda lo, hi: decide_effect(lo, hi, q.polarity),
                  "E[Y_{X=1-t} - Y_{X=t} | X=t]", _rule(q.polarity, "more likely", "less likely"))


def natural(parsed, q):
    """NDE ("If we disregard the mediation effect through M, would X positively affect Y?") and NIE ("Does X
    positively affect Y through M?"), both from the X=0 baseline as CLadder defines them."""
    x, y = node_of(parsed, q.parts["x"]), node_of(parsed, q.parts["y"])
    ms = [node_of(parsed, n) for n in split_list(q.parts["m"])]
    if x == y or x in ms or y in ms:
        raise Abstain("cannot parse: the treatment, outcome and mediators are not distinct variables")

    def compute(m, f):
        out = natural_effect(parsed.graph, f, x, y, ms, q.kind)
        return (f"X={x}, Y={y}, mediators {{{', '.join(ms)}}}", out) if out else None

    return search(parsed, (), compute, lambda lo, hi: decide_effect(lo, hi, q.polarity), q.kind.upper(),
                  _rule(q.polarity, "positively", "negatively"))
