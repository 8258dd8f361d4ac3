"""Wrong worked solutions: always wrong, in the Reason format, and covering the planned mistakes."""
import collections
import json

import pytest

from caujax.causal import solve
from caujax.causal.corrupt import KINDS, corrupt, corruptions
from caujax.causal.generate import generate


def _wrong(answer: str, right: str) -> bool:
    if "LACK_CONDITION" in (answer, right):
        return answer != right
    a, b = json.loads(answer), json.loads(right)
    return abs(float(a["PROB"]) - float(b["PROB"])) >= 0.0005 or a.get("ANSWER") != b.get("ANSWER")


@pytest.fixture(scope="module")
def items():
    return generate(280, 11, style="mixed", layout="mixed", deconfounding=0.5, insufficient=0.15)


def test_every_corruption_is_wrong_and_well_formed(items):
    kinds = collections.Counter()
    for it in items:
        for c in corruptions(it["problem"], it["Reason"]):
            kinds[c.kind] += 1
            assert c.kind in KINDS and c.description == KINDS[c.kind]
            assert _wrong(c.answer, it["answer"]), (c.kind, c.answer, it["answer"])
            assert c.answer == "LACK_CONDITION" or "PROB" in json.loads(c.answer)
            assert all(k.startswith("Step ") and isinstance(v, str) and v for k, v in c.reason.items())
            assert c.reason != it["Reason"]
    assert set(kinds) == set(KINDS), kinds               # every planned mistake occurs on this mix


def test_ett_sign_flip_by_hand():
    ett = next(it for it in generate(60, 12, tasks=("ETT",), noncause=0.0))
    right = json.loads(ett["answer"])
    c = corrupt(ett["problem"], ett["Reason"], kinds=("ett_sign",))
    wrong = json.loads(c.answer)
    assert float(wrong["PROB"]) == pytest.approx(-float(right["PROB"]))
    assert c.reason["Step 4"] != ett["Reason"]["Step 4"] and c.reason["Step 5"] == ett["Reason"]["Step 5"]


def test_ignore_adjustment_drops_the_backdoor_set():
    it = next(i for i in generate(40, 13, tasks=("ATE",), deconfounding=1.0, noncause=0.0))
    c = corrupt(it["problem"], it["Reason"], kinds=("ignore_adjustment",))
    assert "empty set" in c.reason["Step 3"] and "empty set" not in it["Reason"]["Step 3"]
    assert "sum_" not in c.reason["Step 4"]


def test_corrupt_is_seeded_and_rejects_unparsable_text(items):
    it = items[0]
    assert corrupt(it["problem"], it["Reason"], seed=3) == corrupt(it["problem"], it["Reason"], seed=3)
    with pytest.raises(ValueError):
        corrupt("Question: what is love?")
    with pytest.raises(ValueError, match="no corruption"):
        corrupt(it["problem"], it["Reason"], kinds=("nonexistent",))


def test_corrupting_a_real_base_item(caugym_dir):
    base = json.loads((caugym_dir / "test" / "base_dataset.json").read_text())
    it = base[250]                                          # an NIE item with a mediator
    cs = corruptions(it["problem"], it["Reason"])
    assert {"arithmetic_slip", "false_lack", "wrong_cause"} <= {c.kind for c in cs}
    assert solve(it["problem"]).to_json() == it["answer"]
    slip = next(c for c in cs if c.kind == "arithmetic_slip")
    assert slip.reason["Step 5"] == it["Reason"]["Step 5"] and slip.reason["Step 6"] != it["Reason"]["Step 6"]
