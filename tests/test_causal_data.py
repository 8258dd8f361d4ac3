"""The solver against every ground truth in the CauGym and CaLM files, and the renderer against their Reasons."""
import collections
import json

import pytest

from caujax.causal.report import format_table, solver_rows
from caujax.causal.render import align_reason, reason_steps
from caujax.causal.solve import analyze
from caujax.causal.tasks import flip_codes


@pytest.fixture(scope="module")
def rows(caugym_dir, calm_dir):
    r = solver_rows(caugym_dir, calm_dir)
    print("\n" + format_table(r, max_misses=100))          # the table and every miss, visible with -s
    return r


def _share(rs, verdict):
    return sum(r.verdict == verdict for r in rs) / len(rs)


@pytest.mark.parametrize("name", ["base", "calm_basic"])
def test_exact_sets_solved(rows, name):
    rs = rows[name]
    assert len(rs) == 700
    assert _share(rs, "right") >= 0.995, [r for r in rs if r.verdict != "right"][:5]
    assert collections.Counter(r.type for r in rs) == {t: 100 for t in ("ATE", "CDE", "ETT", "NDE", "NIE", "PN", "PS")}


@pytest.mark.parametrize("name,n", [("deconfounding", 700), ("redundant", 700), ("online_rl", 3500)])
def test_newer_generator_sets_miss_only_inside_the_rounding_range(rows, name, n):
    rs = rows[name]
    assert len(rs) == n
    misses = [r for r in rs if r.verdict != "right"]
    assert all(r.verdict == "interval" and r.type in ("PN", "PS") for r in misses), misses[:5]
    for r in misses:                                        # the printed interval really contains the label
        assert r.note.startswith(f"GT {r.expected.prob:.4f} in [")
    assert len(misses) < 0.03 * n


def test_insufficient_says_lack_condition(rows):
    rs = rows["insufficient"]
    assert len(rs) == 700
    assert sum(r.got.status == "lack_condition" for r in rs) >= 0.99 * 700


@pytest.mark.parametrize("name", ["base", "calm_basic", "deconfounding", "redundant", "online_rl", "rephrased",
                                  "omitted"])
def test_never_lack_condition_on_solvable_sets(rows, name):
    assert not [r for r in rows[name] if r.got.status == "lack_condition"]


@pytest.mark.parametrize("name", ["rephrased", "omitted"])
def test_paraphrased_sets_answer_or_abstain(rows, name):
    rs = rows[name]
    assert all(r.got.status in ("ok", "cannot_parse") for r in rs)
    answered = [r for r in rs if r.got.status == "ok"]
    assert len(answered) >= 0.70 * len(rs), f"{name}: answered {len(answered)}/{len(rs)}"
    right = sum(r.verdict == "right" for r in answered)
    assert right >= 0.95 * len(answered), [r for r in answered if r.verdict != "right"][:5]
    assert all(r.got.reason for r in rs if r.got.status == "cannot_parse")


def test_render_reproduces_every_base_reason(caugym_dir):
    """reason_steps rebuilds all 700 base Reasons character for character (letters/codes read off the Reason)."""
    items = json.loads((caugym_dir / "test" / "base_dataset.json").read_text())
    bad = []
    for i, it in enumerate(items):
        parsed, sol = analyze(it["problem"])
        letters, flips = align_reason(sol, parsed.graph, it["Reason"], parsed.values.letters)
        mine = reason_steps(flip_codes(sol, flips), parsed.graph, letters)
        if mine != {k: v for k, v in it["Reason"].items() if v}:
            bad.append(i)
    assert not bad, bad[:10]
