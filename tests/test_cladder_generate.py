"""New CLadder-style items: layout, coverage, balance, originality, and answers checked against a brute-force model."""
import itertools
import json
import math
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from caujax.causal.cladder_generate import ALL_QUERY_TYPES, COMBOS, RUNG, _draw_item, generate_cladder
from caujax.causal.cladder_gen_stories import NONSENSE, REAL

RELEASE = Path(__file__).resolve().parents[1] / "../shared/external/cladder/cladder-v1.5-subset.json"
PREAMBLE = ("Imagine a self-contained, hypothetical world with only the following conditions, and without any "
            "unmentioned factors or causal relationships: ")

# Where the release asks each query type (CLadder v1.5, read off the release's rows).
ALL = "IV arrowhead chain collision confounding diamond diamondcut fork frontdoor mediation".split()
NO_COLLISION = [g for g in ALL if g != "collision"]
X_ROOT = ["arrowhead", "chain", "diamond", "fork", "mediation"]
EXPECTED = {"marginal": ALL, "correlation": NO_COLLISION, "exp_away": ["collision"], "ate": NO_COLLISION,
            "backadj": ALL, "collider_bias": ["collision"], "ett": X_ROOT + ["confounding", "diamondcut", "frontdoor"],
            "nde": ["arrowhead", "mediation"], "nie": ["arrowhead", "chain", "diamond", "frontdoor", "mediation"],
            "det-counterfactual": NO_COLLISION}
MEDIATORS = {"chain": ["V2"], "mediation": ["V2"], "frontdoor": ["V3"], "arrowhead": ["V3"], "diamond": ["V2", "V3"]}
FIELDS = {"question_id": int, "prompt": str, "answer": str, "reasoning": str, "rung": int, "query_type": str,
          "graph_id": str, "story_id": str, "question_property": str, "formal_form": str}


@pytest.fixture(scope="module")
def rows():
    return generate_cladder(1000, 0)


def _release():
    if not RELEASE.exists():
        pytest.skip("the CLadder release copy is not here")
    return json.loads(RELEASE.read_text())


def _sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.?]) (?=[A-Z])", text)


def test_same_seed_same_rows():
    assert generate_cladder(80, 7) == generate_cladder(80, 7)
    assert generate_cladder(80, 7) != generate_cladder(80, 8)


def test_every_pair_the_release_asks(rows):
    expected = {(q, g) for q, gs in EXPECTED.items() for g in gs}
    assert set(COMBOS) == expected and len(COMBOS) == 64
    assert {(r["query_type"], r["graph_id"]) for r in rows} == expected
    counts = Counter((r["query_type"], r["graph_id"]) for r in rows)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_pairs_match_the_release():
    assert {(x["query_type"], x["graph_id"]) for x in _release()} == set(COMBOS)


def test_answers_balanced(rows):
    by_type = defaultdict(Counter)
    for r in rows:
        by_type[r["query_type"]][r["answer"]] += 1
    for q, c in by_type.items():
        assert abs(c["yes"] - c["no"]) <= max(2, 0.05 * (c["yes"] + c["no"])), (q, c)


def test_fields_and_types(rows):
    assert len({r["question_id"] for r in rows}) == len(rows)
    props = Counter(r["question_property"] for r in rows)
    assert set(props) == {"nonsense", "anticommonsense", "commonsense", "easy", "hard"}
    for r in rows:
        assert set(r) == set(FIELDS) and all(isinstance(r[k], t) for k, t in FIELDS.items())
        assert r["answer"] in ("yes", "no") and r["rung"] == RUNG[r["query_type"]]
        assert r["prompt"].startswith(PREAMBLE) and r["prompt"].endswith("?") and r["prompt"].count("?") == 1
        lines = r["reasoning"].split("\n")
        assert len(lines) == 7 and all(lines) and lines[2] == r["formal_form"]
        assert lines[0].startswith("Let ") and re.fullmatch(r"(V?\w+->V?\w+,?)+", lines[1])
        assert (r["question_property"] == "nonsense") == r["story_id"].startswith("gen_nonsense")
        if r["query_type"] not in ("backadj", "collider_bias", "det-counterfactual"):
            # the percentages of the prompt are the numbers the reasoning uses, in the same order
            given = [float(v) for v in re.findall(r" = (\d\.\d\d)(?:;|$)", lines[4])]
            assert [int(p) for p in re.findall(r"(\d+)%", r["prompt"])] == [round(100 * v) for v in given]
            value, sign, thr = re.fullmatch(r"(-?\d+\.\d\d) ([<>]) (0|0\.50)", lines[6]).groups()
            assert (float(value) > float(thr)) == (sign == ">") and lines[5].endswith(f"= {value}")


def test_no_text_from_the_release(rows):
    release = _release()
    seen = {s for x in release for s in _sentences(x["prompt"][len(PREAMBLE):])}
    sample = rows[::3]
    for r in sample:
        body = _sentences(r["prompt"][len(PREAMBLE):])[:-1]      # the graph and the given information
        assert not [s for s in body if s in seen], r["prompt"]
    theirs = set()
    for x in release:
        head = x["reasoning"].split("\n")[0]
        if head.startswith("Let "):
            theirs |= {part.split(" = ", 1)[1].lower() for part in head[4:].rstrip(".").split("; ")}
    ours = {v.name.lower() for s in NONSENSE + REAL for v in s.roles.values()} | {s.odd.name.lower() for s in REAL}
    assert not ours & theirs


# ---- brute force: every node is 1 iff its own uniform noise falls below P(node = 1 | parents); enumerate the cells
# of the noise cube where no node can change, solve each cell's world, and average (exact, no estimand involved).

def _cells(scm):
    cuts = []
    for n in scm.graph.nodes:
        pts = sorted({0.0, 1.0, *map(float, scm.cpt[n])})
        cuts.append([(b - a, (a + b) / 2) for a, b in zip(pts, pts[1:]) if b > a])
    for combo in itertools.product(*cuts):
        yield math.prod(w for w, _ in combo), dict(zip(scm.graph.nodes, (u for _, u in combo)))


def _world(scm, u, do=None):
    do, vals = do or {}, {}
    for n in scm.graph.topological_order():
        if n in do:
            vals[n] = do[n]
            continue
        k = 0
        for q in scm.graph.parents(n):
            k = 2 * k + vals[q]
        vals[n] = int(u[n] < scm.cpt[n][k])
    return vals


def _mean(scm, f, given=lambda w: True):
    num = den = 0.0
    for w, u in _cells(scm):
        if given(_world(scm, u)):
            num, den = num + w * f(u), den + w
    return num / den


def _brute(scm, query_type, graph, detail):
    def y(u, do=None):
        return _world(scm, u, do)["Y"]

    def fact(cond):
        return lambda w: all(w[k] == v for k, v in cond.items())

    def nested(u, x, x_med):
        med = _world(scm, u, {"X": x_med})
        return y(u, {"X": x, **{m: med[m] for m in MEDIATORS[graph]}})
    if query_type == "marginal":
        return _mean(scm, y)
    if query_type == "correlation":
        return _mean(scm, y, fact({"X": 1})) - _mean(scm, y, fact({"X": 0}))
    if query_type == "exp_away":
        return _mean(scm, y, fact({"X": 1, "V3": 1})) - _mean(scm, y, fact({"V3": 1}))
    if query_type == "ate":
        return _mean(scm, lambda u: y(u, {"X": 1}) - y(u, {"X": 0}))
    if query_type == "ett":
        return _mean(scm, lambda u: y(u, {"X": 1}) - y(u, {"X": 0}), fact({"X": 1}))
    if query_type == "collider_bias":
        return _mean(scm, lambda u: y(u, {"X": 1}) - y(u, {"X": 0}), fact({"V3": 1}))
    if query_type == "nde":
        return _mean(scm, lambda u: nested(u, 1, 0) - nested(u, 0, 0))
    if query_type == "nie":
        return _mean(scm, lambda u: nested(u, 0, 1) - nested(u, 0, 0))
    if query_type == "det-counterfactual":
        return _mean(scm, lambda u: y(u, {"X": detail["x"]}), fact(detail["evidence"]))
    raise ValueError(query_type)


def _adjusts(scm, zs) -> bool:
    """Adjusting for zs gives the interventional effect (the adjustment formula is exact for this model)."""
    def y(u):
        return _world(scm, u)["Y"]

    est = 0.0
    for vals in itertools.product((0, 1), repeat=len(zs)):
        z = dict(zip(zs, vals))

        def at(x, z=z):
            return lambda w: w["X"] == x and all(w[k] == v for k, v in z.items())
        pz = _mean(scm, lambda u, z=z: all(_world(scm, u)[k] == v for k, v in z.items()))
        est += pz * (_mean(scm, y, at(1)) - _mean(scm, y, at(0)))
    return abs(est - _brute(scm, "ate", None, {})) < 1e-9


@pytest.mark.parametrize("query_type", ALL_QUERY_TYPES)
def test_answers_agree_with_brute_force(query_type):
    rng = random.Random(f"brute/{query_type}")
    for graph in EXPECTED[query_type]:
        for answer in ("yes", "no") * 3:
            row, scm, truth = _draw_item(rng, query_type, graph, answer)
            assert row["answer"] == answer
            if query_type == "backadj":
                m1, m2 = truth.detail["method1"], truth.detail["method2"]
                ok1, ok2 = _adjusts(scm, m1), _adjusts(scm, m2)
                assert ok1 or ok2
                best = m1 if ok1 and (not ok2 or len(m1) < len(m2)) else m2
                assert (best == m1) == (answer == "yes"), row["prompt"]
                continue
            value = _brute(scm, query_type, graph, truth.detail)
            assert value == pytest.approx(truth.value, abs=1e-9), (query_type, graph)
            yes = {"above": value > truth.threshold, "below": value < truth.threshold,
                   "zero": abs(value) < 1e-9, "nonzero": abs(value) > 1e-9}[truth.yes_if]
            assert ("yes" if yes else "no") == answer, row["prompt"]
            if query_type in ("det-counterfactual", "collider_bias"):
                continue
            # every given number is the model's probability, rounded to whole percent
            for key, shown in re.findall(r"(P\([^)]*\)) = (\d\.\d\d)", row["reasoning"].split("\n")[4]):
                assert abs(_given(scm, key) - float(shown)) <= 0.005 + 1e-9, (key, row["prompt"])


def _given(scm, key: str) -> float:
    """P(...) of the reasoning's notation ("P(Y=1 | X=0, V3=1)", "P(X=0, Y=1)", "P(V1=1)") from the brute force."""
    inner = key[2:-1]
    head, _, cond = inner.partition(" | ")
    event = dict((k, int(v)) for k, v in (a.split("=") for a in head.split(", ")))
    given = dict((k, int(v)) for k, v in (a.split("=") for a in cond.split(", "))) if cond else {}
    return _mean(scm, lambda u: all(_world(scm, u)[k] == v for k, v in event.items()),
                 lambda w: all(w[k] == v for k, v in given.items()))


def test_value_phrases_name_their_variable():
    """Every value phrase shares a word with its own variable's name and with no other variable of the story, so a
    reader can tell which variable a sentence conditions on (as CLadder's stories allow)."""
    stop = {"a", "an", "the", "no", "with", "of", "not", "on"}

    def words(t):
        return set(re.findall(r"[a-z'-]+", t.lower())) - stop
    for story in REAL + tuple(s.anticommonsense() for s in REAL):
        for role, v in story.roles.items():
            others = set().union(*(words(o.name) | words(o.yes) | words(o.no)
                                   for r, o in story.roles.items() if r != role))
            for phrase in (v.yes, v.no):
                shared = words(v.name) & words(phrase)
                assert shared and not shared & others, (story.story_id, role, phrase)
