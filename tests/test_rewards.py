"""RL rewards: built-ins on hand-written completions, never-raise fuzz, weighted NaN-aware sums, DAPO's overlong term,
user reward files and their error messages."""
import difflib
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caujax import scoring
from caujax.data.items import Item
from caujax.losses.params import RolloutParams
from caujax.rl.rewards import (BUILTIN, OVERLONG, RewardError, RewardSet, copy_score, copy_target, load_reward_file,
                               overlong_penalty)

PROB = Item("p", "question", '{"ANSWER": "Yes", "PROB": "0.3847"}', {}, type="ATE")
PS = Item("q", "question", '{"PROB": "0.239"}', {}, type="PS")
LACK = Item("l", "question", "LACK_CONDITION", {}, type="ATE")
YES_NO = Item("y", "question", '{"ANSWER": "No"}', {}, set_name="calm_natural")
ITEMS = (PROB, PS, LACK, YES_NO)


def run(name, completions, item):
    """One built-in on a batch of completions that all answer `item`."""
    n = len(completions)
    return [float(v) for v in BUILTIN[name](["prompt"] * n, list(completions), [item] * n)]


# ---- "causal" ------------------------------------------------------------------------------------------------------
def test_causal_prob_item_strict_tolerance():
    right = '<think>a + b</think>{"ANSWER": "Yes", "PROB": "0.3847"}'
    off_0006 = '<think>a + b</think>{"ANSWER": "Yes", "PROB": "0.3853"}'
    off_0004 = '<think>a + b</think>{"ANSWER": "Yes", "PROB": "0.3843"}'
    no_think = '{"ANSWER":"Yes","PROB":0.3847}'
    assert run("causal", [right, off_0006, off_0004, no_think], PROB) == [1.0, 0.0, 1.0, 1.0]


def test_causal_ignores_numbers_in_thinking_and_reads_last_json():
    only_in_think = '<think>maybe {"PROB": "0.3847"}</think> I am not sure.'
    assert scoring.score(only_in_think, PROB.answer, "paper")          # the paper rule would credit it
    corrected = '</think>{"PROB": "0.3847"} no wait {"PROB": "0.5"}'
    last_right = '</think>{"PROB": "0.5"} no wait {"PROB": "0.3847"}'
    assert run("causal", [only_in_think, corrected, last_right], PROB) == [0.0, 0.0, 1.0]


def test_causal_lack_condition_items():
    lack = "<think>P(Y|X) is missing</think> LACK_CONDITION"
    lack_json = '</think>{"PROB": "LACK_CONDITION"}'
    with_number = '</think>LACK_CONDITION {"PROB": "0.5"}'
    only_in_think = "<think>LACK_CONDITION?</think>"
    assert run("causal", [lack, lack_json, with_number, only_in_think], LACK) == [1.0, 1.0, 0.0, 0.0]
    assert run("causal", [lack], PROB) == [0.0]                             # abstaining on a solvable item is wrong


def test_causal_yes_no_items():
    assert run("causal", ['</think>{"ANSWER": "No"}', '</think>{"ANSWER": "Yes"}', "</think>No"], YES_NO) == \
        [1.0, 0.0, 0.0]


# ---- "format" ------------------------------------------------------------------------------------------------------
def test_format_rewards_a_committed_final_answer_right_or_wrong():
    completions = ['</think>{"PROB": "0.3847"}', '</think>{"PROB": "0.9"}', '</think>{"PROB": "nan"}',
                   '{"PROB": "0.3"}</think>the answer is 0.3', "</think>LACK_CONDITION", ""]
    assert run("format", completions, PROB) == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert run("format", ['</think>{"ANSWER": "Yes"}', '</think>{"ANSWER": "maybe"}'], YES_NO) == [1.0, 0.0]


def test_preset_weights_rank_like_scoring_reward():
    rs = RewardSet.from_params(RolloutParams(rewards=("causal", "format"), reward_weights=(1.0, 0.1)))
    completions = ['</think>{"PROB": "0.3847"}', '</think>{"PROB": "0.9"}', "</think>0.3847"]
    total_R, terms = rs(["p"] * 3, completions, [PROB] * 3)
    np.testing.assert_allclose(total_R, [1.1, 0.1, 0.0], atol=1e-12)
    assert [scoring.reward(c, PROB.answer) for c in completions] == [1.0, scoring.FORMAT_REWARD, 0.0]
    np.testing.assert_array_equal(terms["causal"], [1.0, 0.0, 0.0])
    assert set(terms) == {"causal", "format"}


def test_default_weights_are_one_each():
    rs = RewardSet.from_params(RolloutParams(rewards=("causal", "format")))
    assert rs.weights == (1.0, 1.0)
    total_R, _ = rs(["p"], ['</think>{"PROB": "0.3847"}'], [PROB])
    assert total_R.tolist() == [2.0]


# ---- "copy" --------------------------------------------------------------------------------------------------------
def test_copy_target_is_the_prob_as_written():
    assert copy_target(PROB.answer) == "0.3847"
    assert copy_target(PS.answer) == "0.239"
    assert copy_target('{"PROB": "1"}') == "1"                           # not "1.0": as written
    assert copy_target('{"PROB": 0.25}') == "0.25"
    assert copy_target('{"PROB": "0.1"} {"PROB": "0.2"}') == "0.2"     # the last, as scoring.parse_ground_truth
    assert copy_target(LACK.answer) is None and copy_target(YES_NO.answer) is None


def test_copy_exact_partial_garbage():
    exact, spaced, prefix, garbage = "0.3847", " 0 .38\n47 ", "0.38", "hello world, I think"
    assert run("copy", [exact, spaced, prefix, garbage], PROB) == pytest.approx([1.0, 1.0, 8 / 10, 0.0])
    assert 0.0 < run("copy", ["0.3xyz"], PROB)[0] < 1.0


def test_copy_continuation_after_target_is_charged_at_most_two_characters():
    n = len("0.3847")
    one, two, many = run("copy", ["0.3847x", "0.3847xy", "0.3847" + "z" * 10_000], PROB)
    assert one == pytest.approx(2 * n / (2 * n + 1))
    assert two == pytest.approx(2 * n / (2 * n + 2)) == pytest.approx(many)
    assert one < 1.0


def test_copy_is_monotone_in_matched_prefix():
    target = "0.3847"
    scores = [copy_score(target[:k] + "#" * 20, target) for k in range(len(target) + 1)]
    assert scores[0] == 0.0
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    # head is len(target) + 2 characters here, so M matched characters give 2M / (2n + 2)
    assert scores == pytest.approx([2 * k / (2 * len(target) + 2) for k in range(len(target) + 1)])


def test_copy_is_nan_for_items_without_prob():
    values = BUILTIN["copy"](["p"] * 3, ["0.3847", "LACK_CONDITION", "No"], [PROB, LACK, YES_NO])
    assert values[0] == 1.0 and math.isnan(values[1]) and math.isnan(values[2])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["0.3847", "0.239", "1", "-0.05"]))
def test_copy_score_bounds_and_exactness(text, target):
    value = copy_score(text, target)
    assert 0.0 <= value <= 1.0
    assert (value == 1.0) == ("".join(text.split()) == target)
    assert value == pytest.approx(difflib.SequenceMatcher(None, "".join(text.split())[:len(target) + 2],
                                                          target).ratio())


# ---- never raise ---------------------------------------------------------------------------------------------------
_rng = random.Random(0)
NASTY = [
    "", " ", "</think>", "</think></think>", "{", "}", "{{{{", "}}}}", '{"PROB":', '{"PROB":' * 10_000,
    '{"PROB": "nan"}', '{"PROB": NaN}', '{"PROB": "inf"}', '{"PROB": -Infinity}', '{"PROB": 1e999999}',
    '{"PROB": "1e400"}', '{"PROB": ' + "9" * 5000 + "}", '{"PROB": {"PROB": "0.3847"}}', '{"ANSWER": null}',
    '{"PROB": "0.3847"', '{"PROB": [' * 100_000 + "0" + "]" * 100_000 + "}", '{"PROB": "\ud800"}', "\ud800\udfff",
    "\x00\x01\x7f", "\ufeff0.3847", "\u200b{\"PROB\":\u00a0\"0.3847\"}", "٠.٣٨٤٧", "𝟎.𝟑𝟖𝟒𝟕", "LACK_CONDITION" * 1000,
    "".join(_rng.choice('{}[]":,.0123456789ePROBANSWERLACK_CONDITION<>/think \n\t')
            for _ in range(1 << 20)),                                      # 1 MB of answer-shaped garbage
]


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtins_never_raise_on_nasty_text(name):
    for item in ITEMS:
        values = BUILTIN[name](["p"] * len(NASTY), list(NASTY), [item] * len(NASTY))
        assert len(values) == len(NASTY)
        for text, v in zip(NASTY, values):
            assert math.isnan(v) or 0.0 <= v <= 1.0, (name, item.answer, text[:60], v)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_builtins_never_raise_on_arbitrary_text(text):
    rs = RewardSet.from_params(RolloutParams(rewards=tuple(sorted(BUILTIN))))
    total_R, terms = rs(["p"] * 4, [text] * 4, list(ITEMS))
    assert total_R.shape == (4,) and not np.isinf(total_R).any()
    assert all(((t >= 0) & (t <= 1) | np.isnan(t)).all() for t in terms.values())


# ---- aggregation ---------------------------------------------------------------------------------------------------
def write(tmp_path, source, name="my_rewards.py"):
    path = tmp_path / name
    path.write_text(source)
    return str(path)


def test_weighted_nan_aware_sum(tmp_path):
    path = write(tmp_path, "def a(prompts, completions, items):\n    return [None, 0.5, None, float('nan')]\n"
                           "def b(prompts, completions, items):\n    return [None, None, 1.0, 2.0]\n")
    rs = RewardSet.from_params(RolloutParams(rewards=("a", "b"), reward_weights=(2.0, -3.0), reward_file=path))
    total_R, terms = rs(["p"] * 4, ["c"] * 4, [PROB] * 4)
    assert math.isnan(total_R[0])                                        # no function applies: NaN, never 0
    np.testing.assert_array_equal(total_R[1:], [1.0, -3.0, -6.0])
    assert math.isnan(terms["a"][0]) and math.isnan(terms["a"][3]) and terms["b"][3] == 2.0   # raw, unweighted


def test_copy_nan_does_not_hide_other_terms():
    rs = RewardSet.from_params(RolloutParams(rewards=("copy", "causal")))
    total_R, terms = rs(["p"] * 2, ["LACK_CONDITION", "0.3847"], [LACK, PROB])
    assert math.isnan(terms["copy"][0]) and total_R.tolist() == [1.0, 1.0]
    assert total_R.dtype == np.float64


def test_empty_batch_and_mismatched_rows():
    rs = RewardSet.from_params(RolloutParams(rewards=("causal",)))
    total_R, terms = rs([], [], [])
    assert total_R.shape == (0,) and terms["causal"].shape == (0,)
    with pytest.raises(ValueError, match="2 prompts, 1 completions"):
        rs(["p", "p"], ["c"], [PROB])


# ---- overlong ------------------------------------------------------------------------------------------------------
def dapo_eq13(length, l_max, l_b):
    if length <= l_max - l_b:
        return 0.0
    if length <= l_max:
        return (l_max - l_b - length) / l_b
    return -1.0


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_overlong_penalty_boundaries(factor):
    l_max, l_b = 100, 20
    lengths = [0, 79, 80, 81, 90, 99, 100, 101, 10_000]
    got = overlong_penalty(np.array(lengths), l_max, l_b, factor)
    np.testing.assert_allclose(got, [factor * dapo_eq13(n, l_max, l_b) for n in lengths], atol=1e-12)
    np.testing.assert_allclose(got, factor * np.array([0, 0, 0, -0.05, -0.5, -0.95, -1, -1, -1]), atol=1e-12)
    assert got.dtype == np.float64


def test_overlong_penalty_rejects_bad_buffer():
    with pytest.raises(ValueError, match="buffer=0"):
        overlong_penalty([1], 100, 0)
    with pytest.raises(ValueError, match="buffer=101"):
        overlong_penalty([1], 100, 101)


def test_overlong_term_in_reward_set():
    params = RolloutParams(rewards=("causal",), max_completion_length=100, overlong_buffer=20, overlong_penalty=0.5)
    rs = RewardSet.from_params(params)
    right = '</think>{"PROB": "0.3847"}'
    total_R, terms = rs(["p"] * 4, [right] * 4, [PROB] * 4, lengths=[50, 90, 100, 60], truncated=[0, 0, 0, 1])
    np.testing.assert_allclose(terms[OVERLONG], [0.0, -0.25, -0.5, -0.5])
    np.testing.assert_allclose(total_R, [1.0, 0.75, 0.5, 0.5])
    with pytest.raises(ValueError, match="needs the completion lengths"):
        rs(["p"], [right], [PROB])
    with pytest.raises(ValueError, match="shape"):
        rs(["p"], [right], [PROB], lengths=[1, 2])
    off = RewardSet.from_params(RolloutParams(rewards=("causal",)))
    assert OVERLONG not in off(["p"], [right], [PROB], lengths=[10_000])[1]


# ---- reward files --------------------------------------------------------------------------------------------------
GOOD = '''
import math
from json import dumps
from math import sqrt


def length(prompts, completions, items):
    return [len(c) / 10 for c in completions]


def _helper(x):
    return x


class NotAReward:
    pass


def says_yes(prompts, completions, items):
    return [float("yes" in c) if i.answer != "LACK_CONDITION" else None for c, i in zip(completions, items)]


half = lambda prompts, completions, items: [0.5] * len(completions)
'''


def test_load_good_file(tmp_path):
    path = write(tmp_path, GOOD)
    found = load_reward_file(path)
    assert sorted(found) == ["half", "length", "says_yes"]       # not dumps, sqrt, _helper or the class
    rs = RewardSet.from_params(RolloutParams(rewards=("length", "causal", "says_yes"), reward_file=path))
    assert rs.sources == ("my_rewards.py", "built-in", "my_rewards.py")
    total_R, terms = rs(["p"] * 2, ["yes", '</think>{"PROB": "0.3847"}'], [LACK, PROB])
    np.testing.assert_allclose(terms["length"], [0.3, 2.6])
    np.testing.assert_allclose(total_R, [0.3 + 0.0, 2.6 + 1.0 + 0.0])


def test_missing_file_names_the_field(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"rollout\.reward_file.*nope\.py"):
        load_reward_file(tmp_path / "nope.py")
    with pytest.raises(FileNotFoundError, match=r"rollout\.reward_file"):
        RewardSet.from_params(RolloutParams(rewards=("x",), reward_file=str(tmp_path / "nope.py")))


@pytest.mark.parametrize("source, error", [("def f(:\n    pass\n", "SyntaxError"),
                                           ("x = 1 / 0\n", "ZeroDivisionError: division by zero"),
                                           ("import no_such_module_here\n", "ModuleNotFoundError")])
def test_file_that_fails_to_import(tmp_path, source, error):
    path = write(tmp_path, source, "broken.py")
    with pytest.raises(RewardError, match=f"broken.py.*{error}") as info:
        load_reward_file(path)
    assert isinstance(info.value, ValueError) and info.value.__cause__ is not None


BAD = '''
def boom(prompts, completions, items):
    return [1 / 0 for _ in completions]

def short(prompts, completions, items):
    return [1.0] * (len(completions) - 1)

def infinite(prompts, completions, items):
    return [0.0, float("inf"), 0.0]

def text(prompts, completions, items):
    return [0.0, 0.0, "1.0"]

def scalar(prompts, completions, items):
    return 1.0
'''


@pytest.mark.parametrize("name, pattern", [
    ("boom", r"reward 'boom' \(bad\.py\) raised ZeroDivisionError: division by zero on a batch of 3 completions "
             r"\(first: prompt 0 'prompt A'"),
    ("short", r"reward 'short' \(bad\.py\) returned 2 values for 3 completions"),
    ("infinite", r"reward 'infinite' \(bad\.py\) returned inf at row 1"),
    ("text", r"reward 'text' \(bad\.py\) returned a non-numeric value '1\.0' \(str\) at row 2"),
    ("scalar", r"reward 'scalar' \(bad\.py\) returned float, not a sequence of 3 floats"),
])
def test_bad_user_functions(tmp_path, name, pattern):
    rs = RewardSet.from_params(RolloutParams(rewards=("causal", name), reward_file=write(tmp_path, BAD, "bad.py")))
    with pytest.raises(RewardError, match=pattern):
        rs(["prompt A", "prompt B", "prompt C"], ["x", "y", "z"], [PROB] * 3)


def test_functions_get_their_own_copy_of_the_batch(tmp_path):
    path = write(tmp_path, "def rude(p, c, i):\n    c[:] = ['x'] * len(c)\n    return [0.0] * len(c)\n")
    completions = ['</think>{"PROB": "0.3847"}']
    _, terms = RewardSet.from_params(RolloutParams(rewards=("rude", "causal"), reward_file=path))(
        ["p"], completions, [PROB])
    assert terms["causal"].tolist() == [1.0] and completions == ['</think>{"PROB": "0.3847"}']


def test_numpy_and_bool_outputs_are_accepted(tmp_path):
    path = write(tmp_path, "import numpy as np\ndef arr(p, c, i):\n    return np.array([1, 0, 2], dtype=np.int8)\n"
                           "def flags(p, c, i):\n    return [True, False, np.bool_(True)]\n")
    total_R, _ = RewardSet.from_params(RolloutParams(rewards=("arr", "flags"), reward_file=path))(
        ["p"] * 3, ["c"] * 3, [PROB] * 3)
    assert total_R.tolist() == [2.0, 0.0, 3.0]


def test_unknown_name_lists_available_and_suggests(tmp_path):
    with pytest.raises(RewardError, match=r"unknown reward 'casual'; did you mean 'causal'\?.*copy \(built-in\)"
                                          r".*reward_file"):
        RewardSet.from_params(RolloutParams(rewards=("casual",)))
    path = write(tmp_path, GOOD)
    with pytest.raises(RewardError, match=r"unknown reward 'lenght'; did you mean 'length'\?.*"
                                          r"length \(my_rewards\.py\)"):
        RewardSet.from_params(RolloutParams(rewards=("lenght",), reward_file=path))
    with pytest.raises(RewardError, match=r"unknown reward 'zzz' Available: causal \(built-in\)"):
        RewardSet.from_params(RolloutParams(rewards=("zzz",)))


def test_ambiguous_duplicate_and_reserved_names(tmp_path):
    path = write(tmp_path, "def causal(p, c, i):\n    return [0.0] * len(c)\n"
                           "def overlong(p, c, i):\n    return [0.0] * len(c)\n")
    with pytest.raises(RewardError, match="both a built-in and a function of"):
        RewardSet.from_params(RolloutParams(rewards=("causal",), reward_file=path))
    with pytest.raises(RewardError, match="names a reward twice"):
        RewardSet.from_params(RolloutParams(rewards=("format", "format")))
    with pytest.raises(RewardError, match="may not be called 'overlong'"):
        RewardSet.from_params(RolloutParams(rewards=("overlong",), reward_file=path))
