"""New training problems in CLadder's yes/no style (Jin et al., NeurIPS 2023), with ground truth from caujax's engine.

Each item draws a binary SCM (caujax.causal.scm.BinarySCM) on one of CLadder's ten graph templates, states the
probabilities the query's estimand needs (computed exactly from the SCM, rounded to whole percent as CLadder prints
them), and answers from those rounded numbers through the estimand, as CLadder's own solutions do. A draw is kept
only when (a) rounding cannot move the estimand across its threshold nor spread it over more than 0.1
(cladder_gen_estimands.robust_side), (b) the printed value is at least 0.01 away from the threshold and at most 1 in
size, and (c) the exact quantity of the drawn SCM (interventions and counterfactuals computed from the model itself,
not through the estimand) lies on the same side. Deterministic counterfactuals use 0/1 mechanisms,
backdoor-adjustment items the graph's backdoor criterion (Pearl 2009, def. 3.3.1).

Rows use the CLadder v1.5 layout: question_id, prompt, answer, reasoning (7 lines: variables, edges, query,
estimand, given numbers joined by "; ", arithmetic, comparison), rung, query_type, graph_id, story_id,
question_property, formal_form.

Modules: cladder_gen_estimands (graph templates, given numbers, estimands), cladder_gen_stories (our stories),
cladder_gen_text (sentence frames), this one (SCM draws, exact quantities, items).
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from caujax.causal import cladder_gen_text as T
from caujax.causal.cladder_answer import QUERY_TYPES, RUNG_OF
from caujax.causal.cladder_gen_estimands import (ASKED, ESTIMANDS, MEDIATORS, TEMPLATES, Term, formal_form, n2,
                                                 robust_side)
from caujax.causal.cladder_gen_stories import NONSENSE, REAL_BY_GRAPH, Story
from caujax.causal.scm import BinarySCM

ALL_QUERY_TYPES = QUERY_TYPES
ALL_GRAPHS = ("IV", "arrowhead", "chain", "collision", "confounding", "diamond", "diamondcut", "fork", "frontdoor",
              "mediation")
RUNG = RUNG_OF
COMBOS = tuple((q, g) for q in ALL_QUERY_TYPES for g in ALL_GRAPHS if (q, g) in ASKED)
GRAPHS = {name: tpl.graph for name, tpl in TEMPLATES.items()}
ID_OFFSET = 1_000_000     # generated ids never meet the release's (below 32k)
MARGIN = 0.01             # the printed value must show which side of the threshold it is on
MAX_TRIES = 5000


@dataclass(frozen=True)
class Truth:
    """The exact quantity behind an item and how it decides the answer: "yes" iff value is above / below threshold
    (yes_if "above" / "below"), or is zero / nonzero. detail: what the tests need to recompute it."""

    value: float
    threshold: float
    yes_if: str
    detail: dict


def generate_cladder(n: int, seed: int, query_types=ALL_QUERY_TYPES, graphs=ALL_GRAPHS) -> list[dict]:
    """n CLadder-style rows; the same seed gives the same rows. Items cycle through every (query type, graph) pair
    CLadder asks, restricted to `query_types` and `graphs`; answers alternate so each query type is about 50/50."""
    combos = [c for c in COMBOS if c[0] in query_types and c[1] in graphs]
    if not combos:
        raise ValueError(f"no CLadder query type x graph pair among {query_types} x {graphs}")
    rows = []
    for i in range(n):
        k, rnd = i % len(combos), i // len(combos)
        row, _, _ = _draw_item(random.Random(f"cladder/{seed}/{i}"), *combos[k],
                               answer="yes" if (k + rnd) % 2 == 0 else "no")
        row["question_id"] = ID_OFFSET + i
        rows.append(row)
    return rows


def _draw_item(rng: random.Random, query_type: str, graph: str, answer: str | None = None):
    """One item: (row, the SCM it was drawn from, Truth). answer: force "yes"/"no" (None: random)."""
    if (query_type, graph) not in ASKED:
        raise ValueError(f"CLadder does not ask {query_type} on {graph}")
    tpl = TEMPLATES[graph]
    story, kind = _pick_story(rng, graph)
    want = (answer or rng.choice(("yes", "no"))) == "yes"
    hidden, formal = True, None
    if query_type == "det-counterfactual":
        scm, truth, given, q, lines, formal = _det_item(rng, tpl, story, want)
    elif query_type == "backadj":
        scm = _draw_scm(rng, graph)
        truth, given, q, lines = _backadj_item(rng, graph, story, want)
    elif query_type == "collider_bias":
        scm, truth, given, q, lines = _collider_item(rng, story, want)
    else:
        scm, truth, given, q, lines = _estimand_item(rng, query_type, graph, story, want)
        hidden = not (graph == "arrowhead" and query_type in ("nde", "nie"))
    prop = kind
    if kind == "commonsense" and query_type != "det-counterfactual":
        effect = exact_value(scm, "ate", graph) if GRAPHS[graph].has_path("X", "Y") else 0.0
        prop = "easy" if (effect > 0) - (effect < 0) == story.sign else "hard"
    prompt = " ".join([T.PREAMBLE, *T.graph_sentences(story, tpl, hidden), given, q])
    formal = formal or formal_form(query_type, graph)
    reasoning = "\n".join([T.mapping_line(story, tpl), T.edges_line(tpl), formal, *lines])
    yes = {"above": truth.value > truth.threshold, "below": truth.value < truth.threshold,
           "zero": abs(truth.value) < 1e-12, "nonzero": abs(truth.value) >= 1e-12}[truth.yes_if]
    row = {"question_id": 0, "prompt": prompt, "answer": "yes" if yes else "no", "reasoning": reasoning,
           "rung": RUNG[query_type], "query_type": query_type, "graph_id": graph, "story_id": story.story_id,
           "question_property": prop, "formal_form": formal}
    return row, scm, truth


def _pick_story(rng: random.Random, graph: str) -> tuple[Story, str]:
    """Nonsense 40 %, anticommonsense 30 %, commonsense 30 % (the release subset here: 37 / 31 / 31 %)."""
    r = rng.random()
    if r < 0.4:
        return rng.choice(NONSENSE), "nonsense"
    story = rng.choice(REAL_BY_GRAPH[graph])
    return (story.anticommonsense(), "anticommonsense") if r < 0.7 else (story, "commonsense")


def _cpt(graph, node: str, f) -> list:
    """CPT list in BinarySCM's order: parents in letter order, the first one the most significant bit."""
    ps = graph.parents(node)
    return [f(dict(zip(ps, bits))) for bits in itertools.product((0, 1), repeat=len(ps))]


def _draw_scm(rng: random.Random, graph: str) -> BinarySCM:
    """Every conditional probability uniform in [0.02, 0.98]. On IV, P(Y | V1, X) = a + b X + c V1 (no interaction):
    the Wald ratio then equals the ATE, b (the constant-effect assumption of instrumental variables)."""
    g = GRAPHS[graph]
    cpt = {n: [rng.uniform(0.02, 0.98) for _ in range(2 ** len(g.parents(n)))] for n in g.nodes}
    if graph == "IV":
        while True:
            a, b, c = rng.uniform(0.02, 0.98), rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6)
            if all(0.02 <= a + b * x + c * v <= 0.98 for x in (0, 1) for v in (0, 1)):
                break
        cpt["Y"] = _cpt(g, "Y", lambda pa: a + b * pa["X"] + c * pa["V1"])
    return BinarySCM(g, cpt)


def _assignments(nodes):
    return [dict(zip(nodes, bits)) for bits in itertools.product((0, 1), repeat=len(nodes))]


def exact_value(scm: BinarySCM, query_type: str, graph: str) -> float:
    """The query's quantity computed from the model itself: joint and do() for rungs 1-2; for rung 3 the
    counterfactuals of a model with independent noise per node, which condition only on non-descendants W of X:
    E[Y_x' | X = x] = sum_w P(w | x) P(Y | do(x'), w) and E[Y_{x, M_x'}] = sum_w P(w) sum_m P(m | do(x'), w)
    P(Y | do(x, m), w) (every descendant of X is Y or a mediator on these graphs)."""
    g, j = scm.graph, scm.joint()

    def pr(event, given=None):
        return scm.prob(event, given, joint=j)

    def do_pr(assign, event, given=None):
        return scm.do(assign).prob(event, given)

    if query_type == "marginal":
        return pr({"Y": 1})
    if query_type == "correlation":
        return pr({"Y": 1}, {"X": 1}) - pr({"Y": 1}, {"X": 0})
    if query_type == "exp_away":
        return pr({"Y": 1}, {"X": 1, "V3": 1}) - pr({"Y": 1}, {"V3": 1})
    if query_type == "ate":
        return do_pr({"X": 1}, {"Y": 1}) - do_pr({"X": 0}, {"Y": 1})
    if query_type == "collider_bias":
        if g.has_path("X", "Y"):
            raise ValueError("collider_bias needs Y to be no descendant of X")
        return 0.0                       # Y_x = Y for every x when Y is no descendant of X
    w = [n for n in g.nodes if n != "X" and n not in g.descendants("X")]
    if query_type == "ett":
        untreated = sum(pr(a, {"X": 1}) * do_pr({"X": 0}, {"Y": 1}, a) for a in _assignments(w))
        return pr({"Y": 1}, {"X": 1}) - untreated
    ms = list(MEDIATORS[graph])
    if g.descendants("X") != set(ms) | {"Y"}:
        raise ValueError(f"{graph}: a descendant of X is neither Y nor a mediator")

    def nested(x, x_med):
        return sum(pr(a) * do_pr({"X": x_med}, m, a) * do_pr({"X": x, **m}, {"Y": 1}, a)
                   for a in _assignments(w) for m in _assignments(ms))
    if query_type == "nde":
        return nested(1, 0) - nested(0, 0)
    if query_type == "nie":
        return nested(0, 1) - nested(0, 0)
    raise ValueError(f"no exact quantity for {query_type!r}")


def _given_prob(scm: BinarySCM, joint, term: Term) -> float:
    if term.kind == "joint":
        return scm.prob({"X": term.conds[0][1], "Y": 1}, joint=joint)
    return scm.prob({term.target: 1}, dict(term.conds), joint=joint)


def _estimand_item(rng, query_type, graph, story, want):
    est = ESTIMANDS[(query_type, graph)]
    thr = est.threshold
    for _ in range(MAX_TRIES):
        scm = _draw_scm(rng, graph)
        j = scm.joint()
        percents = {t: round(100 * _given_prob(scm, j, t)) for t in est.givens}
        if not all(1 <= v <= 99 for v in percents.values()):
            continue
        side = robust_side(est, percents)
        if side == 0:
            continue
        g = {t: v / 100 for t, v in percents.items()}
        value = est.value(g)
        if abs(value - thr) < MARGIN or abs(value) > 1:
            continue
        exact = exact_value(scm, query_type, graph)
        if (exact > thr) == (side > 0) and exact != thr:
            break
    else:
        raise RuntimeError(f"no unambiguous {query_type} item on {graph} in {MAX_TRIES} draws")
    positive = (side > 0) == want          # word the question so that its answer is the one wanted
    given = " ".join(T.given_sentence(story, t, percents[t]) for t in est.givens)
    lines = [est.formula, "; ".join(f"{t.key} = {n2(g[t])}" for t in est.givens), f"{est.text(g)} = {n2(value)}",
             f"{n2(value)} {'>' if side > 0 else '<'} {'0.50' if thr else '0'}"]
    truth = Truth(exact, thr, "above" if positive else "below", {})
    return scm, truth, given, T.question(query_type, graph, story, positive), lines


def _backadj_item(rng, graph, story, want):
    """Method 1 / 2 adjust for {z} or for nothing; the more correct one is the valid backdoor set, and when both
    are valid (the fork's V2 only causes Y) the one that needs no adjustment, as the release answers."""
    z = {"IV": "V1", "frontdoor": "V1", "confounding": "V1", "fork": "V2", "chain": "V2", "mediation": "V2",
         "collision": "V3", "arrowhead": "V3", "diamond": rng.choice(("V2", "V3")),
         "diamondcut": rng.choice(("V1", "V3"))}[graph]
    g = GRAPHS[graph]
    best = [] if g.is_backdoor_set("X", "Y", []) else [z]
    if not g.is_backdoor_set("X", "Y", best):
        raise ValueError(f"{graph}: neither {{}} nor {{{z}}} is a backdoor set")
    z_first = (best == [z]) == want
    m1, m2 = ([z], []) if z_first else ([], [z])
    given, q = T.backadj_sentences(story, z, z_first)
    truth = Truth(1.0 if m1 == best else 0.0, 0.5, "above", {"method1": m1, "method2": m2})
    return truth, given, q, T.backadj_lines(g, m1, m2, best)


def _collider_item(rng, story, want):
    """X -> V3 <- Y: X does not affect Y, whatever the correlation among V3 = 1 (Berkson's paradox)."""
    for _ in range(MAX_TRIES):
        scm = _draw_scm(rng, "collision")
        j = scm.joint()
        c = {"V3": 1}
        px, py, pxy = scm.prob({"X": 1}, c, j), scm.prob({"Y": 1}, c, j), scm.prob({"X": 1, "Y": 1}, c, j)
        corr = (pxy - px * py) / math.sqrt(px * (1 - px) * py * (1 - py))
        if abs(round(corr, 2)) >= 0.01:
            break
    given, q = T.collider_sentences(story, round(corr, 2), want)
    lines = ["X->V3<-Y: Y is no descendant of X, so Y_{X=1} = Y_{X=0} = Y for everyone, also among V3 = 1",
             f"Corr(X, Y | V3=1) = {round(corr, 2):.2f}",
             "V3 is a collider: conditioning on it makes X and Y correlated without any effect of X on Y",
             "0 = 0"]
    truth = Truth(exact_value(scm, "collider_bias", "collision"), 0.0, "zero" if want else "nonzero", {})
    return scm, truth, given, q, lines


def _det_item(rng, tpl, story, want):
    """Deterministic mechanisms (CLadder's det-counterfactual): one-parent nodes copy or negate their parent, others
    are the and / or of their parents; every parentless node but X is observed. Y_x given the evidence is the value
    of Y in the model with X set to x, the evidence being on non-descendants of X."""
    funcs = {n: ((None, rng.random() < 0.5) if len(ps) == 1 else (rng.choice(("and", "or")), False))
             for n, ps in tpl.det}
    order = dict(tpl.det)

    def mech(n, pa):
        op, neg = funcs[n]
        vals = [pa[q] for q in order[n]]
        v = vals[0] if op is None else (all(vals) if op == "and" else any(vals))
        return float(bool(v) != neg)

    g = tpl.graph
    cpt = {n: (_cpt(g, n, lambda pa, n=n: mech(n, pa)) if n in order else [0.5]) for n in g.nodes}
    scm = BinarySCM(g, cpt)
    evidence = {r: rng.randint(0, 1) for r in tpl.roots}
    x = rng.randint(0, 1)
    p1 = scm.do({"X": x}).prob({"Y": 1}, evidence)
    y = int(p1 > 0.5) if want else int(p1 < 0.5)
    given, q = T.det_sentences(story, tpl, funcs, evidence, x, y)
    formal = f"Y_{{X={x}}} = {y}" + (" | " + ", ".join(f"{r}={v}" for r, v in evidence.items()) if evidence else "")
    vals, steps = {**evidence, "X": x}, []
    for n, ps in tpl.det:
        if n == "X":
            continue
        op, neg = funcs[n]
        vals[n] = int(mech(n, vals))
        if op is None and not neg:
            steps.append(f"{n} = {ps[0]} = {vals[n]}")
            continue
        expr = f"not {ps[0]}" if op is None else f" {op} ".join(ps)
        nums = f"not {vals[ps[0]]}" if op is None else f" {op} ".join(str(vals[q]) for q in ps)
        steps.append(f"{n} = {expr} = {nums} = {vals[n]}")
    eqs = [f"{r} = {v}" for r, v in evidence.items()]
    eqs += [f"{n} = " + ((("not " if funcs[n][1] else "") + ps[0]) if funcs[n][0] is None
                         else f" {funcs[n][0]} ".join(ps)) for n, ps in tpl.det]
    lines = [f"Solve for Y, given the evidence and the action do(X={x})", "; ".join(eqs),
             f"X = {x}; " + "; ".join(steps), f"{vals['Y']} {'=' if vals['Y'] == y else '!='} {y}"]
    truth = Truth(p1, 0.5, "above" if y == 1 else "below", {"x": x, "evidence": evidence, "y": y})
    return scm, truth, given, q, lines, formal
