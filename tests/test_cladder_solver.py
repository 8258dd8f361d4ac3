"""The symbolic CLadder solver: the shared CLadder file (coverage, accuracy, the report lists every miss), one
hand-written story per query type checked by hand, polarity flips, and abstention on garbage and cut-off text."""
import os
import pathlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caujax.causal.cladder_answer import STATUSES
from caujax.causal.cladder_report import format_report, report_rows, table
from caujax.causal.cladder_solve import solve_cladder

PRE = ("Imagine a self-contained, hypothetical world with only the following conditions, and without any "
       "unmentioned factors or causal relationships: ")


def cladder_file() -> pathlib.Path:
    env = os.environ.get("CLADDER_DIR")
    base = pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "external" \
        / "cladder"
    path = base / "cladder-v1.5-subset.json"
    if not path.is_file():
        pytest.fail(f"{path} does not exist: set CLADDER_DIR to the folder holding cladder-v1.5-subset.json")
    return path


@pytest.fixture(scope="module")
def rows():
    from caujax.data.cladder import load_cladder

    return report_rows(load_cladder(cladder_file()))


def test_shared_file_coverage_and_accuracy(rows):
    total = table(rows)[-1]
    assert total.query_type == "ALL" and total.n == len(rows) > 2000
    assert total.coverage >= 0.80, f"coverage {total.coverage:.3f}"
    assert total.accuracy >= 0.99, f"accuracy {total.accuracy:.4f}"
    # the query type comes from the question's wording alone and always matches the file's
    read = [r for r in rows if r.got.query_type is not None]
    assert len(read) == len(rows) and all(r.got.query_type == r.query_type for r in read)


def test_report_lists_every_wrong_answer_and_groups_abstentions(rows):
    text = format_report(rows)
    wrong = [r for r in rows if r.verdict == "wrong"]
    assert f"wrong answers: {len(wrong)}" in text
    for r in wrong:
        assert f"id {r.id} [{r.query_type}]" in text
    abstained = sum(r.verdict == "abstain" for r in rows)
    assert f"abstentions: {abstained}, by reason" in text
    assert sum(int(n) for n in re.findall(r"^ +(\d+)  ", text, re.MULTILINE)) == abstained


# ----------------------------------------------------------------------------------------------- hand-written
FARM = PRE + ("Fertilizer has a direct effect on soil quality and harvest. Soil quality has a direct effect on "
              "harvest. ")
SUMMER = PRE + "Season has a direct effect on ice cream and sunburn. Ice cream has a direct effect on sunburn. "
SUMMER_DATA = ("For winter days and people not eating ice cream, the probability of sunburn is 10%. For winter days "
               "and people eating ice cream, the probability of sunburn is 20%. For summer days and people not "
               "eating ice cream, the probability of sunburn is 50%. For summer days and people eating ice cream, "
               "the probability of sunburn is 55%. The overall probability of summer is 40%. ")
SLEEP = PRE + "Exercise has a direct effect on mood and sleep. Mood has a direct effect on sleep. "
SLEEP_DATA = ("For people who do not exercise and in a bad mood, the probability of good sleep is 20%. For people "
              "who do not exercise and in a good mood, the probability of good sleep is 40%. For people who "
              "exercise and in a bad mood, the probability of good sleep is 50%. For people who exercise and in a "
              "good mood, the probability of good sleep is 60%. For people who do not exercise, the probability "
              "of good mood is 30%. For people who exercise, the probability of good mood is 80%. ")
TROPHY = PRE + "Skill has a direct effect on trophy. Luck has a direct effect on trophy. "
WAKE = PRE + ("Alarm has a direct effect on waking. Sunlight has a direct effect on waking. We know that alarm "
              "ringing or bright sunlight causes waking early. We observed there is no bright sunlight. ")

CASES = [
    # P(Y) = 0.3 * 0.9 + 0.7 * 0.4 = 0.55 > 0.5
    ("marginal", FARM + "The overall probability of fertilizer use is 30%. For fields without fertilizer, the "
     "probability of good harvest is 40%. For fields with fertilizer, the probability of good harvest is 90%. "
     "Is good harvest more likely than poor harvest overall?", "yes", 0.55),
    # P(Y | X=1) - P(Y | X=0) = 0.40 / 0.50 - 0.10 / 0.50 = 0.6
    ("correlation", FARM + "The overall probability of fertilizer use is 50%. The probability of no fertilizer use "
     "and good harvest is 10%. The probability of fertilizer use and good harvest is 40%. Is the chance of good "
     "harvest larger when observing fertilizer use?", "yes", 0.6),
    # among trophy holders: P(luck | skill) - P(luck | no skill) = 0.50 - 0.80 < 0: skill explains luck away
    ("exp_away", TROPHY + "The overall probability of skill is 40%. For players without skill and without a "
     "trophy, the probability of luck is 30%. For players without skill and with a trophy, the probability of luck "
     "is 80%. For players with skill and without a trophy, the probability of luck is 20%. For players with skill "
     "and with a trophy, the probability of luck is 50%. If we look at players with a trophy, does the chance of "
     "luck decrease when skill?", "yes", -0.3),
    # backdoor on season: 0.6 * (0.20 - 0.10) + 0.4 * (0.55 - 0.50) = 0.08
    ("ate", SUMMER + SUMMER_DATA + "Will eating ice cream increase the chance of sunburn?", "yes", 0.08),
    # season confounds ice cream and sunburn: conditioning on it (Method 2) is right, the raw correlation is not
    ("backadj", SUMMER + "Method 1: We look directly at how ice cream correlates with sunburn in general. Method 2: "
     "We look at this correlation case by case according to season. To understand how ice cream affects sunburn, "
     "is it more correct to use the Method 1 than Method 2?", "no", None),
    # skill and luck only meet in the trophy: no directed path skill -> luck
    ("collider_bias", TROPHY + "For players with a trophy, the correlation between skill and luck is -0.20. If we "
     "look at players with a trophy, does it mean that skill affects luck?", "no", None),
    # chain: E[Y_0 - Y_1 | X=1] = 0.30 - 0.70 = -0.4: less likely
    ("ett", PRE + "Exercise has a direct effect on mood. Mood has a direct effect on sleep. For people who do not "
     "exercise, the probability of good sleep is 30%. For people who exercise, the probability of good sleep is "
     "70%. For people who exercise, would it be less likely to see good sleep if the person did not exercise?",
     "yes", -0.4),
    # sum_m P(m | 0) [P(y | 1, m) - P(y | 0, m)] = 0.7 * 0.3 + 0.3 * 0.2 = 0.27
    ("nde", SLEEP + SLEEP_DATA + "If we disregard the mediation effect through mood, would exercise positively "
     "affect sleep?", "yes", 0.27),
    # sum_m P(y | 0, m) [P(m | 1) - P(m | 0)] = 0.2 * (0.2 - 0.7) + 0.4 * (0.8 - 0.3) = 0.1
    ("nie", SLEEP + SLEEP_DATA + "Does exercise negatively affect sleep through mood?", "no", 0.1),
    # no sunlight, alarm forced off: waking early = alarm or sunlight = 0
    ("det-counterfactual", WAKE + "Would the sleeper wakes early if no alarm ringing instead of alarm ringing?", "no",
     0.0),
]


@pytest.mark.parametrize("kind,text,expected,value", CASES, ids=[c[0] for c in CASES])
def test_hand_written_story(kind, text, expected, value):
    got = solve_cladder(text)
    assert (got.status, got.query_type, got.answer) == ("ok", kind, expected), got.reason
    if value is None:
        assert got.value is None
    else:
        assert got.value == pytest.approx(value, abs=1e-9), got.reason


# the words of each question whose opposite must flip the answer
FLIPS = {"marginal": ("more likely", "less likely"), "correlation": ("larger", "smaller"),
         "exp_away": ("decrease", "increase"), "ate": ("increase", "decrease"),
         "backadj": ("Method 1 than Method 2", "Method 2 than Method 1"),
         "collider_bias": ("affects", "does not affect"), "ett": ("less likely", "more likely"),
         "nde": ("positively", "negatively"), "nie": ("negatively", "positively"),
         "det-counterfactual": ("if no alarm ringing instead of alarm ringing",
                                "if alarm ringing instead of no alarm ringing")}


@pytest.mark.parametrize("kind,text,expected,value", CASES, ids=[c[0] for c in CASES])
def test_polarity_word_flips_the_answer(kind, text, expected, value):
    question = text[text.rindex(". ") + 2:]
    a, b = FLIPS[kind]
    assert question.count(a) == 1
    flipped = text[:-len(question)] + question.replace(a, b)
    got = solve_cladder(flipped)
    assert got.status == "ok" and got.answer == {"yes": "no", "no": "yes"}[expected], (flipped, got.reason)


def test_the_other_treatment_value_flips_the_ate():
    # "not eating ice cream" names value 0: E[Y | do(0)] - E[Y | do(1)] = -0.08
    got = solve_cladder(SUMMER + SUMMER_DATA + "Will not eating ice cream increase the chance of sunburn?")
    assert (got.answer, got.value) == ("no", pytest.approx(-0.08, abs=1e-9)), got.reason


def test_a_needed_number_missing_or_a_borderline_value_abstains():
    no_prior = SUMMER + SUMMER_DATA.replace("The overall probability of summer is 40%. ", "") + \
        "Will eating ice cream increase the chance of sunburn?"
    assert solve_cladder(no_prior).status == "cannot_parse"
    # P(Y) = 0.5 * 0.49 + 0.5 * 0.51 = 0.50: rounding leaves both sides of 0.5 open
    tie = FARM + ("The overall probability of fertilizer use is 50%. For fields without fertilizer, the probability "
                  "of good harvest is 49%. For fields with fertilizer, the probability of good harvest is 51%. Is "
                  "good harvest more likely than poor harvest overall?")
    got = solve_cladder(tie)
    assert got.status == "cannot_parse" and "not determined" in got.reason


# ----------------------------------------------------------------------------------------------- never raises
def _valid(got):
    assert got.status in STATUSES and isinstance(got.reason, str) and got.reason
    assert (got.answer is None) == (got.status == "cannot_parse")


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_garbage_abstains(text):
    got = solve_cladder(text)
    _valid(got)
    assert got.status == "cannot_parse"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sampled_from([c[1] for c in CASES]), st.floats(0.0, 1.0, exclude_max=True))
def test_cut_off_prompt_abstains(text, where):
    got = solve_cladder(text[:int(where * len(text))])
    _valid(got)
    assert got.status == "cannot_parse"


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.sampled_from([c[1] for c in CASES]), st.data())
def test_dropped_or_mangled_sentence_never_raises(text, data):
    sentences = re.split(r"(?<=[.?])\s+", text)
    k = data.draw(st.integers(0, len(sentences) - 1))
    junk = data.draw(st.sampled_from(["", "Foo has a direct effect on foo.", "For x, the probability of y is 5%.",
                                      "The probability of a and b is 101%.", "We observed nothing and nothing."]))
    _valid(solve_cladder(" ".join(sentences[:k] + ([junk] if junk else []) + sentences[k + 1:])))


def test_the_report_command_names_a_bad_file_in_one_line(tmp_path, capsys):
    from caujax.causal.cladder_report import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "PATH" in capsys.readouterr().out
    (tmp_path / "cut.json").write_text('[{"prompt": "x"')
    for path, message in ((tmp_path / "nope.json", "nope.json does not exist"),
                          (tmp_path / "cut.json", "cut.json: not a JSON file: Expecting"),
                          (tmp_path, "no CLadder file in")):
        with pytest.raises(SystemExit) as done:
            main([str(path)])
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err
