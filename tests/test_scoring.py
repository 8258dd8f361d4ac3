"""Scorers: the paper rule against an independent transcription of CauGym's script, hand cases, never-raises."""
import itertools
import json
import re
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from caujax import scoring
from caujax.scoring import FORMAT_REWARD, LACK_CONDITION, reward, score


# ---- reference: CauGym eval/sample_evaluate.py + sample_insuff_evaluate.py, written plainly as the script is ----
def _ref_extract(text):
    text = re.sub(r"\s+", "", text)
    values = []
    for m in re.findall(r"\{\"(?:ANSWER|PROB)\"\:.*?\}", text, re.DOTALL):
        try:
            v = json.loads(m.lower()).get("prob")
        except json.JSONDecodeError:
            continue
        if v is not None:
            values.append(str(v))
    return values


def _ref_floats(text):
    out = []
    for v in _ref_extract(text):
        try:
            out.append(float(v))
        except ValueError:
            continue
    return out


def ref_paper(response, answer):
    if answer == LACK_CONDITION:
        return LACK_CONDITION in response
    gt = float(_ref_extract(answer)[-1])
    return any(abs(gt - c) < 0.0005 for c in _ref_floats(response))


def ref_strict(response, answer):
    """The strict rule as its spec reads: final answer only (none while a <think> is open at the end), last
    parseable JSON, no PROB when insufficient."""
    if re.search(r"<think>(?:(?!</think>).)*$", response, re.DOTALL):
        return False
    final = response.split("</think>")[-1]
    objs = []
    for m in re.findall(r"\{\"(?:ANSWER|PROB)\"\:.*?\}", re.sub(r"\s+", "", final), re.DOTALL):
        try:
            objs.append(json.loads(m.lower()))
        except json.JSONDecodeError:
            continue
    if answer == LACK_CONDITION:      # a PROB that is not a number ("N/A", "LACK_CONDITION") commits to nothing
        return LACK_CONDITION in final and not any(_ref_number(o.get("prob")) is not None for o in objs)
    pred = _ref_number(objs[-1].get("prob")) if objs else None
    return pred is not None and abs(float(_ref_extract(answer)[-1]) - pred) < 0.0005


def _ref_number(value):
    if value is None:
        return None
    try:
        return float(str(value))
    except ValueError:
        return None


# ---- the corpus: answer formats x value spellings x response shapes, every one scored by both ----
GROUND_TRUTHS = ['{"ANSWER": "Yes", "PROB": "0.3847"}', '{"ANSWER": "No", "PROB": "-0.06"}', '{"PROB": "0.239"}',
                 '{"PROB": "1"}', '{"ANSWER": "No", "PROB": "0"}', '{"PROB": "0.1234"}', '{"PROB": "-0.6014"}',
                 LACK_CONDITION]


def _spellings(gt: float) -> list[str]:
    """Ways to write a PROB value: right, off by less / exactly / more than the tolerance, and odd syntax."""
    near = [gt, gt + 0.0004, gt - 0.00049, gt + 0.0005, gt - 0.0006, gt + 0.01, -gt if gt else 0.5]
    out = [f'"{v:.4f}"' for v in near] + [f"{v:.6f}" for v in near[:4]]      # quoted strings and bare numbers
    g = f"{gt:.4f}"
    out += [f'"{g[:3]} {g[3:]}"', f'" {g}"', f'"{g}0000"', f'"{gt:e}"', f'"{g[:-1]}_{g[-1]}"', '"0.1234"',
            f'"{g}%"', '"nan"', '"inf"', "null", "true", f"[{g}]", f'"{g}"', f"{g}e0", f'"{gt:+.4f}"',
            f'"{g}"xyz', f'"{g.replace("0", chr(0x660))}"']
    return out


def _shapes(v: str, yes: str) -> list[str]:
    """Response shapes around one spelled value v."""
    j = f'{{"ANSWER": "{yes}", "PROB": {v}}}'
    return [
        j, f'{{"PROB": {v}}}', f"<think>\nLet me compute. {j}\n</think>\nThe answer is 42.",
        f'<think>{j}</think>\n{{"ANSWER": "{yes}", "PROB": "0.9999"}}',
        f'<think>hmm</think>\n{{"PROB": "0.9999"}} wait, actually {j}',
        f'<think>format like {{"ANSWER": "Yes", "PROB": "0.1234"}}</think> {j}',
        f'{{"prob": {v}}}', f'{{"Prob": {v}}}', f"{{'PROB': {v}}}", f'{{"ANSWER": "{yes}"}}',
        f'{{ "PROB" : {v} }}', f'{{\n  "ANSWER":\t"{yes}",\n  "PROB": {v}\n}}', f'```json\n{j}\n```',
        f'\\boxed{{{j}}}', f'{{"answer": "{yes}", "PROB": {v}}}', f'{{"ANSWER": "{yes}", "PROB": {v}, "x": {{1}}}}',
        f'{{"PROB": {{"value": {v}}}}}', f'{{"PROB": {v}', f'{{"PROB": {v}, "PROB": "0.777"}}',
        f'{{"PROB": "0.777", "prob": {v}}}', f'{{\\"PROB\\": {v}}}', f"“PROB”: {v}", f'{{"P R O B": {v}}}',
        f'{{"PROB":\u00a0{v}}}', f'{{"PROB":\u200b{v}}}', f'{{"PROB":\u2028{v}}}', f"garbage }} {{ {j} {{{{",
        f'{{"ANSWER": "{LACK_CONDITION}", "PROB": {v}}}', f'<think>maybe {LACK_CONDITION}?</think>{j}',
        f'{j} {LACK_CONDITION}', f"{LACK_CONDITION.lower()} {j}", f'{{"PROB":{{"PROB": {v}}}',
    ]


def _corpus():
    items = []
    for answer in GROUND_TRUTHS:
        if answer == LACK_CONDITION:
            values = ['"0.5"', '"0"', "0.25", '"N/A"', f'"{LACK_CONDITION}"', "null"]
            yes = "No"
        else:
            values = _spellings(float(json.loads(answer)["PROB"]))
            yes = json.loads(answer).get("ANSWER", "Yes")
        for v in values:
            items += [(r, answer) for r in _shapes(v, yes)]
        items += [(r, answer) for r in (LACK_CONDITION, f"<think>{LACK_CONDITION}</think>", "", "  ", "no json")]
    return items


CORPUS = _corpus()


def test_corpus_is_large_and_discriminating():
    paper = [ref_paper(r, a) for r, a in CORPUS]
    strict = [ref_strict(r, a) for r, a in CORPUS]
    assert len(CORPUS) >= 2000
    # both verdicts must be common, or agreement below would prove little
    assert 0.2 < sum(paper) / len(paper) < 0.8, sum(paper)
    assert 0.1 < sum(strict) / len(strict) < 0.8, sum(strict)
    assert sum(p != s for p, s in zip(paper, strict)) > 150


def test_paper_rule_matches_the_script_on_every_corpus_item():
    bad = [(r, a, ref_paper(r, a)) for r, a in CORPUS if score(r, a, "paper") != ref_paper(r, a)]
    assert not bad, f"{len(bad)} disagreements, first: {bad[:3]}"


def test_strict_rule_matches_its_spec_on_every_corpus_item():
    bad = [(r, a, ref_strict(r, a)) for r, a in CORPUS if score(r, a, "strict") != ref_strict(r, a)]
    assert not bad, f"{len(bad)} disagreements, first: {bad[:3]}"


GT = '{"ANSWER": "Yes", "PROB": "0.3847"}'
HAND = [  # (response, answer, paper verdict, strict verdict)
    ('{"ANSWER": "Yes", "PROB": "0.3847"}', GT, True, True),
    ('{"ANSWER":"No","PROB":"0.3847"}', GT, True, True),                     # Yes/No is not scored (ETT is inverted)
    ('{"PROB": 0.38519}', GT, True, True),                                   # number, |d| = 0.00049
    ('{"PROB": "0.3852"}', GT, False, False),                                # |d| = 0.0005000000000000559
    ('{"PROB": "0.0005"}', '{"ANSWER": "No", "PROB": "0"}', False, False),   # |d| == 0.0005 exactly: not < 0.0005
    ('{"PROB": "-0.0004999"}', '{"ANSWER": "No", "PROB": "0"}', True, True),
    ('{"PROB": "0. 38 47"}', GT, True, True),                                # whitespace is removed first
    ('{"prob": "0.3847"}', GT, False, False),                                # lower-case key: no regex match
    ("{'PROB': '0.3847'}", GT, False, False),                                # single quotes: no match
    ('{"ANSWER": "Yes"}', GT, False, False),                                 # ANSWER only: no PROB
    ('<think>{"PROB": "0.3847"}</think>{"PROB": "0.1"}', GT, True, False),   # paper takes any JSON
    ('{"PROB": "0.3847"} then {"PROB": "0.5"}', GT, True, False),            # strict takes the last
    ('{"PROB": "0.5"} then {"PROB": "0.3847"}', GT, True, True),
    ('{"PROB": "0.3847"} {"PROB": [}', GT, True, True),                      # an unparseable last match is skipped
    ('<think>{"PROB": "0.3847"}</think>', GT, True, False),                  # nothing after </think>
    ('{"PROB": "0.3847", "PROB": "0.9"}', GT, False, False),                 # duplicate key: json keeps the last
    ('{"PROB": "0.1234"}', '{"PROB": "0.1236"}', True, True),                # the format example can be right
    ('I will answer like {"ANSWER": "Yes", "PROB": "0.1234"}.', GT, False, False),
    ("", GT, False, False),
    (LACK_CONDITION, LACK_CONDITION, True, True),
    (f"<think>{LACK_CONDITION}?</think> {{\"PROB\": \"0.2\"}}", LACK_CONDITION, True, False),   # thinking only
    (f'{LACK_CONDITION} {{"PROB": "0.2"}}', LACK_CONDITION, True, False),     # hedged with a number
    (f'{{"ANSWER": "{LACK_CONDITION}"}}', LACK_CONDITION, True, True),
    (f'{{"ANSWER": "{LACK_CONDITION}", "PROB": "{LACK_CONDITION}"}}', LACK_CONDITION, True, True),
    ("lack_condition", LACK_CONDITION, False, False),                        # case-sensitive substring
    ('{"ANSWER": "Yes"}', '{"ANSWER": "Yes"}', True, True),                  # extension: Yes/No-only ground truth
    ('{"ANSWER": "yes"} {"ANSWER": "No"}', '{"ANSWER": "Yes"}', True, False),
    # issue 13 kind 3: cut at the length cap inside <think>, so there is no final answer
    ('<think>Try the adjustment formula ... {"ANSWER": "Yes", "PROB": "0.5"} hmm, redo',
     '{"ANSWER": "Yes", "PROB": "0.5"}', True, False),
    (f"<think>so {LACK_CONDITION}? no, P(Z) is", LACK_CONDITION, True, False),
    ('<think>a</think>{"PROB": "0.3847"}<think>re-check {"PROB": "0.3847"}', GT, True, False),   # reopened
]


@pytest.mark.parametrize("response,answer,paper,strict", HAND)
def test_hand_cases(response, answer, paper, strict):
    assert score(response, answer, "paper") is paper
    assert score(response, answer, "strict") is strict


def test_reward_levels():
    assert reward('<think>x</think>{"ANSWER": "Yes", "PROB": "0.3847"}', GT) == 1.0
    assert reward('<think>x</think>{"ANSWER": "Yes", "PROB": "0.5"}', GT) == FORMAT_REWARD
    assert reward(f"<think>x</think>{LACK_CONDITION}", GT) == FORMAT_REWARD
    assert reward('<think>{"PROB": "0.3847"}</think>no answer', GT) == 0.0
    assert reward('{"PROB": "nan"}', GT) == 0.0
    assert reward(LACK_CONDITION, LACK_CONDITION) == 1.0
    assert reward('{"PROB": "0.1"}', LACK_CONDITION) == FORMAT_REWARD


def test_bad_rule_and_bad_ground_truth_raise():
    with pytest.raises(ValueError, match="rule"):
        score("x", GT, "lenient")
    with pytest.raises(ValueError, match="no PROB"):
        score("x", "Yes")


def test_many_unclosed_openers_are_linear():
    # the original findall rescans to the end from every opener: about 400 s for this megabyte; ours is linear
    text = '{"PROB":' * 131072
    start = time.perf_counter()
    for rule in scoring.RULES:
        assert score(text, GT, rule) is False
    assert time.perf_counter() - start < 5.0


ANY_CHAR = st.one_of(st.characters(exclude_categories=()),          # includes lone surrogates
                     st.sampled_from(list('{}[]"\':,.-0123456789eE PROBANSWER\n\t')),
                     st.sampled_from(['{"PROB":', '{"ANSWER":', "<think>", "</think>", LACK_CONDITION, '"0.3847"',
                                      "[" * 50]))
TEXT = st.lists(ANY_CHAR, max_size=60).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, answer=st.sampled_from(GROUND_TRUTHS))
def test_never_raises_on_arbitrary_text(text, answer):
    for rule in scoring.RULES:
        assert isinstance(score(text, answer, rule), bool)
        assert isinstance(score(text, answer, rule, opened=True), bool)
    assert reward(text, answer) in (0.0, FORMAT_REWARD, 1.0)
    assert score(text, answer, "strict") == ref_strict(text, answer)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(unit=TEXT.filter(bool), depth=st.integers(1, 1 << 20))
@example(unit='{"PROB":"0.3847"}', depth=1 << 20)
@example(unit="\ud800</think>", depth=1 << 19)
def test_never_raises_on_megabyte_and_deeply_nested_text(unit, depth):
    texts = [unit * (1 + (1 << 20) // len(unit)),                     # about a megabyte of the same pattern
             '{"PROB":' + "[" * depth + unit + "]" * depth + "}",     # nesting json.loads cannot recurse through
             '{"ANSWER":' + "{" * depth + unit + "}"]
    for text, (answer, rule) in itertools.product(texts, itertools.product(GROUND_TRUTHS[:2] + [LACK_CONDITION],
                                                                           scoring.RULES)):
        assert isinstance(score(text, answer, rule), bool)


def test_agreement_on_real_r1_traces(caugym_dir):
    """The cold-start set's 75 DeepSeek-R1 traces, each scored against its own and nine other ground truths."""
    from caujax.data import caugym

    items = caugym.load_caugym("sft", caugym_dir)
    pairs = [(a.trace, items[(i + k) % len(items)].answer) for i, a in enumerate(items) for k in range(10)]
    pairs += [(a.trace, LACK_CONDITION) for a in items]
    verdicts = [(score(r, a, "paper"), score(r, a, "strict")) for r, a in pairs]
    assert verdicts == [(ref_paper(r, a), ref_strict(r, a)) for r, a in pairs]
    assert sum(v[0] for v in verdicts) >= 75 and sum(not v[0] for v in verdicts) >= 500
