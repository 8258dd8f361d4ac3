"""Hand-computable causal quantities, graph criteria checked against interventions, and the answer conventions."""
import pathlib
import random
import subprocess
import sys

import pytest

from caujax.causal import Answer, solve
from caujax.causal.answer import format_prob, infer_type
from caujax.causal.generate import random_dag
from caujax.causal.scm import BinarySCM, CausalGraph
from caujax.causal.tasks import (Facts, MissingFact, Query, Term, bound_interval, decide, evaluate, is_cause,
                                 solve_query)

# Z confounds X -> Y. CPT index: parents in node order, first parent = most significant bit.
CONFOUNDED = BinarySCM(CausalGraph(("Z", "X", "Y"), (("Z", "X"), ("Z", "Y"), ("X", "Y"))),
                       {"Z": [0.4], "X": [0.3, 0.8], "Y": [0.4, 0.7, 0.5, 0.9]})


def _facts(scm, terms):
    j = scm.joint()
    return Facts((t, round(scm.prob(dict(t.target), dict(t.given), j), 4)) for t in terms)


def test_ate_with_backdoor_adjustment_by_hand():
    # sum_z [P(y|x=1,z) - P(y|x=0,z)] P(z) = (0.7-0.4)*0.6 + (0.9-0.5)*0.4 = 0.34
    q = Query("ATE", "X", "Y", 1, 1)
    terms = [Term((("Y", 1),), (("X", x), ("Z", z))) for x in (0, 1) for z in (0, 1)]
    facts = _facts(CONFOUNDED, terms + [Term((("Z", 0),)), Term((("Z", 1),))])
    sol = solve_query(CONFOUNDED.graph, q, facts)
    assert sol.adjustment == ("Z",)
    assert sol.prob == pytest.approx(0.34, abs=1e-12)
    assert sol.answer == "Yes"
    # the interventional truth of the model agrees, the confounded contrast does not
    do1 = CONFOUNDED.do({"X": 1}).prob({"Y": 1})
    do0 = CONFOUNDED.do({"X": 0}).prob({"Y": 1})
    assert do1 - do0 == pytest.approx(0.34, abs=1e-12)
    naive = CONFOUNDED.prob({"Y": 1}, {"X": 1}) - CONFOUNDED.prob({"Y": 1}, {"X": 0})
    assert abs(naive - 0.34) > 0.01


def test_ate_from_calm_text_by_hand():
    text = ("Input Info: Imagine a self-contained, hypothetical world with only the following conditions, and without "
            "any unmentioned factors or causal relationships: Zeta has a direct effect on xeno. Zeta has a direct "
            "effect on yolk. Xeno has a direct effect on yolk.\n"
            "For those with xeno being high and zeta being low, the probability of yolk being high is 0.7000. "
            "For those with xeno being low and zeta being low, the probability of yolk being high is 0.4000. "
            "The probability of zeta being low is 0.6000. "
            "For those with xeno being high and zeta being high, the probability of yolk being high is 0.9000. "
            "For those with xeno being low and zeta being high, the probability of yolk being high is 0.5000. "
            "The probability of zeta being high is 0.4000. \n"
            "Question: If xeno is changed to be high, will yolk be more likely to be high?")
    a = solve(text)
    assert (a.type, a.prob, a.answer, a.status) == ("ATE", 0.34, "Yes", "ok")
    assert a.to_json() == '{"ANSWER": "Yes", "PROB": "0.34"}'
    # drop one needed number: not enough to answer
    short = text.replace("The probability of zeta being high is 0.4000. ", "").replace(
        "The probability of zeta being low is 0.6000. ", "")
    assert solve(short).lack_condition and solve(short).to_json() == "LACK_CONDITION"


def test_ett_is_factual_minus_counterfactual():
    q = Query("ETT", "X", "Y", x=1, y=1)       # for those with X=0, had X been 1
    f = Facts([(Term((("Y", 1),), (("X", 0),)), 0.30), (Term((("Y", 1),), (("X", 1),)), 0.55)])
    val, terms, _ = evaluate(q, f)
    assert val == pytest.approx(0.30 - 0.55)
    assert decide("ETT", val) == "Yes"           # counterfactual raises P(y): ETT < 0 is Yes
    assert decide("ATE", -val) == "Yes"
    assert [t for t, _ in terms] == [Term((("Y", 1),), (("X", 0),)), Term((("Y", 1),), (("X", 1),))]


def test_near_zero_rule_uses_the_unrounded_value():
    assert decide("NIE", 0.00098) == "No"        # reported as PROB "0.001", labelled No in the data
    assert decide("NIE", 0.00103) == "Yes"
    assert decide("ETT", -0.0009) == "No"
    assert decide("PN", 0.5) is None


def _bound_facts(py_marg, do_terms, joint_xy, joint_fact):
    return Facts([(Term((("Y", 1),)), py_marg), *do_terms,
                  (Term((("X", 0), ("Y", 0))), joint_xy), (Term((("X", 1), ("Y", 1))), joint_fact)])


def test_pn_bounds_by_hand_and_clamps():
    g = CausalGraph(("X", "Y"), (("X", "Y"),))
    # PN: factual X=1,Y=1; hypothetical X=0 -> Y=0
    do = [(Term((("Y", 0),), (("X", 0),)), 0.60)]                  # P(Y=0|do(X=0)) = P(Y=0|X=0)
    f = _bound_facts(0.70, do, 0.20, 0.50)
    up = solve_query(g, Query("PN", "X", "Y", 0, 0, bound="upper"), f)
    lo = solve_query(g, Query("PN", "X", "Y", 0, 0, bound="lower"), f)
    assert up.prob == pytest.approx((0.60 - 0.20) / 0.50)          # [P(y'|do(x')) - P(x',y')] / P(x,y) = 0.8
    assert lo.prob == pytest.approx((0.70 - (1 - 0.60)) / 0.50)    # [P(y) - P(y|do(x'))] / P(x,y) = 0.6
    clamp_hi = solve_query(g, Query("PN", "X", "Y", 0, 0, bound="upper"), _bound_facts(0.7, do, 0.05, 0.2))
    clamp_lo = solve_query(g, Query("PN", "X", "Y", 0, 0, bound="lower"), _bound_facts(0.1, do, 0.2, 0.5))
    assert (clamp_hi.prob, clamp_lo.prob) == (1.0, 0.0)


def test_pn_rounds_the_intermediate_do_value():
    g = CausalGraph(("Z", "X", "Y"), (("Z", "X"), ("Z", "Y"), ("X", "Y")))
    # P(Y=0|do(X=0)) = 0.1234*0.3 + 0.1240*0.7 = 0.12382, shown (and used) as 0.1238:
    # (0.1238 - 0.01) / 0.3 = 0.37933 -> 0.3793, whereas the unrounded 0.12382 would give 0.3794
    f = Facts([(Term((("Y", 0),), (("X", 0), ("Z", 0))), 0.1234), (Term((("Y", 0),), (("X", 0), ("Z", 1))), 0.1240),
               (Term((("Z", 0),)), 0.3), (Term((("Z", 1),)), 0.7),
               (Term((("X", 0), ("Y", 0))), 0.0100), (Term((("X", 1), ("Y", 1))), 0.3000)])
    sol = solve_query(g, Query("PN", "X", "Y", 0, 0, bound="upper"), f)
    assert sol.adjustment == ("Z",) and sol.do_value == 0.1238
    assert sol.prob == 0.3793
    lo, hi = bound_interval(sol.query, f, sol.adjustment)
    assert lo < (0.12382 - 0.01) / 0.3 < hi and hi - lo < 0.002


def test_non_cause_shortcuts():
    g = CausalGraph.from_edges([("A", "B"), ("B", "C"), ("A", "D")])
    empty = Facts()
    assert solve_query(g, Query("ATE", "C", "A", 1, 1), empty).prob == 0.0           # no directed path
    assert solve_query(g, Query("CDE", "A", "C", 1, 1, (("B", 0),)), empty).answer == "No"   # no edge A->C
    assert solve_query(g, Query("NIE", "A", "B", 1, 1), empty).cause is False         # only the direct edge
    assert is_cause(g, Query("NIE", "A", "C", 1, 1))
    with pytest.raises(MissingFact):                                                    # a cause needs numbers
        solve_query(g, Query("NIE", "A", "C", 1, 1), empty)


def test_d_separation_and_backdoor_sets():
    m_bias = CausalGraph.from_edges([("A", "X"), ("A", "M"), ("B", "M"), ("B", "Y"), ("X", "Y")])
    assert m_bias.d_separated({"A"}, {"B"}, set())
    assert not m_bias.d_separated({"A"}, {"B"}, {"M"})             # conditioning on a collider opens the path
    assert m_bias.is_backdoor_set("X", "Y", [])
    assert not m_bias.is_backdoor_set("X", "Y", ["M"])
    assert m_bias.is_backdoor_set("X", "Y", ["M", "A"])
    assert next(m_bias.adjustment_sets("X", "Y")) == []
    chain = CausalGraph.from_edges([("Z", "X"), ("Z", "Y"), ("X", "W"), ("W", "Y")])
    assert chain.mediators("X", "Y") == ["W"]
    assert not chain.is_backdoor_set("X", "Y", ["W"])               # a descendant of X
    assert [p for p in chain.directed_paths("Z", "Y")] == [["Z", "X", "W", "Y"], ["Z", "Y"]]


@pytest.mark.parametrize("seed", range(12))
def test_adjustment_sets_reproduce_interventions(seed):
    """Every set the criteria accept gives the interventional distribution of a random binary SCM."""
    rng = random.Random(seed)
    g = random_dag(rng, rng.randint(4, 7))
    scm = BinarySCM(g, {v: [rng.uniform(0.05, 0.95) for _ in range(2 ** len(g.parents(v)))] for v in g.nodes})
    joint = scm.joint()
    checked = 0
    for x in g.nodes:
        for y in g.descendants(x):
            for z in list(g.adjustment_sets(x, y, max_size=2))[:3]:
                est = sum(scm.prob({y: 1}, {x: 1, **dict(zip(z, b))}, joint) * scm.prob(dict(zip(z, b)), None, joint)
                          for b in _bits(len(z)))
                assert est == pytest.approx(scm.do({x: 1}).prob({y: 1}), abs=1e-9), (x, y, z)
                checked += 1
            med = g.mediators(x, y)
            if med and g.has_edge(x, y):
                for z in list(g.adjustment_sets(x, y, "joint", med, max_size=2))[:2]:
                    m = {n: 1 for n in med}
                    est = sum(scm.prob({y: 1}, {x: 1, **m, **dict(zip(z, b))}, joint)
                              * scm.prob(dict(zip(z, b)), None, joint) for b in _bits(len(z)))
                    assert est == pytest.approx(scm.do({x: 1, **m}).prob({y: 1}), abs=1e-9), (x, y, med, z)
                    checked += 1
    assert checked > 0


def _bits(k):
    import itertools
    return list(itertools.product((0, 1), repeat=k))


def test_engine_and_scorers_import_without_jax():
    """causal/ and scoring.py are plain Python + numpy (DESIGN.md layout): they must run where jax is absent."""
    code = "import caujax.causal, caujax.scoring, sys; assert 'jax' not in sys.modules, sorted(sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=pathlib.Path(__file__).parents[1], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_infer_type_reads_a_whole_problem_or_the_question_alone():
    question = "If Y is changed to be high, will Z be more likely to be low?"
    assert infer_type(question) == infer_type(f"Input Info: ...\nQuestion: {question}\nProvide ...") == "ATE"
    assert infer_type("Question: Conditioned on A being low, if the B had been high, would C ...?") == "CDE"
    assert infer_type("Question: What is the effect?") is None


def test_answer_strings_and_formats():
    assert format_prob(0.2390) == "0.239" and format_prob(1.0) == "1" and format_prob(-0.06) == "-0.06"
    assert format_prob(-0.00001) == "0"
    assert Answer("PN", 0.7623, None).to_json() == '{"PROB": "0.7623"}'
    assert Answer("ETT", -0.3847, "Yes").to_json() == '{"ANSWER": "Yes", "PROB": "-0.3847"}'
    bad = solve("What is the capital of France?")
    assert bad.status == "cannot_parse" and bad.reason
    with pytest.raises(ValueError, match="unparsed"):
        bad.to_json()
    with pytest.raises(ValueError):
        Answer("ATE", None, None, status="maybe")
