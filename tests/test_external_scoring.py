"""The existing benchmarks' scorers: each official rule as the data README writes it, on probe corpora of 500+
replies whose verdicts are fixed by construction, the final-answer rules, and no scorer raising on any text."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caujax import external_scoring as xs

# (reply, what CLadder's rule reads): lower-case, trim whitespace, then surrounding double quotes; prefixes longest
# first: "i'm sorry ", "neither ", "none ", "as a" -> invalid; "yes" -> yes; "no" -> no; else invalid.
CLADDER_BASES = [
    ("Yes", "yes"), ("No", "no"), ("yes.", "yes"), ("Yes, because the effect is positive.", "yes"),
    ("No, the correlation is negative.", "no"), ("Nope", "no"), ("Not really", "no"), ("Noted, yes", "no"),
    ("Nonetheless yes", "no"), ("none", "no"), ("None of the above", None), ("Neither yes nor no", None),
    ("neither", None), ("I'm sorry I cannot answer", None), ("I'm sorry, but yes", None), ("As a language model", None),
    ("As an AI, yes", None), ("Asa yes", None), ("Yesterday it rained", "yes"), ("Yeah", None), ("Y", None),
    ("The answer is yes", None), ("Answer: No", None), ("**Yes**", None), ("'Yes'", None), ("“Yes”", None),
    ("(Yes)", None), ("Sí", None), ("noyes", "no"), ("1", None), ("no2", "no"), ("YES!!!", "yes"),
    ("No.\nYes.", "no"), ("Nein", None), ("n o", None), ("Ye s", None), ("yes and no", "yes"),
    ("none yes", None), ("As a result: yes", None), ("asyes", None), ("<think>yes</think>Yes", None),
    ("Yes</think>", "yes"), ("no\u00a0way", "no"), ("-Yes", None),
]
WRAPS = [lambda t: t, lambda t: f'"{t}"', lambda t: f"  \n{t}\t ", lambda t: f' "{t}" \n', lambda t: f'""{t}""']
CASES = [lambda t: t, str.upper, str.lower]


def cladder_corpus() -> list[tuple[str, str | None]]:
    corpus = [(wrap(case(text)), label) for (text, label), case, wrap in itertools.product(CLADDER_BASES, CASES, WRAPS)]
    corpus += [("", None), ('""', None), ("   ", None), ('" yes"', None), ('"no "', "no"), ("'no'", None),
               ('"""', None), ("\u3000Yes", "yes")]                   # str.strip() also trims ideographic spaces
    return corpus


# (reply, first digit as CausalProbe's rule reads it): drop "</s>" and newlines, one leading space, lower-case,
# then the first character for which str.isdigit() holds.
PROBE_BASES = [
    ("3", 3), ("Answer: 2", 2), ("In 2024 the answer is 3", 2), ("", None), ("none", None), ("Choice three", None),
    ("x\u00b2 = 4", 2), ("\u0663", 3), ("The4th option", 4), ("abc1def", 1), ("</s>3", 3), ("\n\n 1. foo", 1),
    ("option B", None), ("\u2163", None), ("\u00bd", None), ("\u2460 is right", 1), ("1", 1), ("4.", 4),
    ("Option 3 because 1990", 3), ("I pick choice #2", 2), ("The correct answer is (4)", 4), ("no digit here", None),
    ("COVID-19 caused it: 1", 1), ("**3**", 3), ("3.Media coverage", 3), ("Answer:\n2", 2), ("5", 5), ("0", 0),
    ("one", None), ("\uff13", 3), ("first: 2, second: 1", 2), ("x" * 50 + "9", 9), ("</s></s>", None),
    ("Answer is 10", 1), ("four", None), ("#1", 1), ("(2)", 2), ("choice 4, not 3", 4), ("2/4", 2), ("\t3", 3),
    ("v2 of the story", 2), ("Neither; maybe 1", 1), ("<s>\n1", 1),
]
PROBE_VARIANTS = [lambda t: t, str.upper, str.lower, lambda t: "</s>" + t, lambda t: "\n" + t, lambda t: " " + t,
                  lambda t: t + " 4 3 2 1 end", lambda t: t + "</s>", lambda t: "\n\n" + t + "\n",
                  lambda t: t.replace(" ", "\n "), lambda t: " \n" + t, lambda t: "</s>\n" + t + " 7"]


def probe_corpus() -> list[tuple[str, int | None]]:
    corpus = []
    for (text, digit), variant in itertools.product(PROBE_BASES, PROBE_VARIANTS):
        reply = variant(text)
        if digit is None and any(ch.isdigit() for ch in variant("")):
            digit = next(int(ch) for ch in variant("") if ch.isdigit())      # a suffix with digits names one
        corpus.append((reply, digit))
    return corpus


def test_cladder_official_rule_on_a_probe_corpus_of_500_replies():
    corpus = cladder_corpus()
    assert len(corpus) >= 500
    wrong = [(r, want, xs.cladder_official(r)) for r, want in corpus if xs.cladder_official(r) != want]
    assert not wrong, wrong[:10]
    assert {label for _, label in corpus} == {"yes", "no", None}


def test_causalprobe_official_rule_on_a_probe_corpus_of_500_replies():
    corpus = probe_corpus()
    assert len(corpus) >= 500
    wrong = [(r, want, xs.causalprobe_official(r)) for r, want in corpus if xs.causalprobe_official(r) != want]
    assert not wrong, wrong[:10]
    assert sum(d is None for _, d in corpus) >= 20 and len({d for _, d in corpus}) >= 7


@pytest.mark.parametrize("reply, want", [
    ("Let me think. The graph has a confounder... So the answer is **No**.", "no"),
    ("<think>Maybe yes.</think>\n\nNo, conditioning on the collider opens the path.", "no"),
    ("<think>long reasoning cut at the cap", None),
    ("Step 1: ...\nStep 2: ...\nFinal answer: yes", "yes"),
    ("Therefore $\\boxed{\\text{No}}$", "no"),
    ("The effect is 0.12 > 0.\nYes", "yes"),
    ("Not sure; the data are insufficient.", None),      # the official rule reads this as "no"
    ("Yes. Wait, the sign is negative, so the answer is no.", "no"),
    ("Answer: yes, as there is no confounding", "yes"),
    ("", None),
])
def test_cladder_final_answer_rule(reply, want):
    assert xs.cladder_final(reply) == want


def test_cladder_final_rule_reads_an_opened_prompt_only_after_its_closing_tag():
    assert xs.cladder_final("the answer is yes", opened=True) is None
    assert xs.cladder_final("the answer is yes</think>No.", opened=True) == "no"


@pytest.mark.parametrize("reply, want, want_set", [
    ("In 2024 inflation rose, so the answer is 3.", 3, (3,)),      # the official rule reads 2 here
    ("<think>1 or 2?</think>Answer: 2", 2, (2,)),
    ("3. Media coverage tends to focus on the negative.", 3, (3,)),
    ("The answer is option (4)", 4, (4,)),
    ("Answer: 1 and 3", 1, (1, 3)),
    ("Options 1, 2 and 4 are correct.", None, (1, 2, 4)),   # several options: no single choice
    ("The answer is 2.5", None, None),
    ("It is hard to say.", None, None),
    ("<think>I think 3", None, None),
])
def test_causalprobe_final_answer_rule(reply, want, want_set):
    assert xs.causalprobe_final(reply) == want
    assert xs.causalprobe_final_set(reply) == want_set


def test_predict_names_unknown_rules_and_the_missing_m_scorer():
    assert xs.predict("cladder", "official", "Yes") == "yes"
    assert xs.predict("causalprobe", "final", "Answer: 1 and 3", multi=True) == (1, 3)
    with pytest.raises(ValueError, match="no working official scorer"):
        xs.predict("causalprobe", "official", "1", multi=True)
    with pytest.raises(ValueError, match="rule must be"):
        xs.predict("cladder", "prefix", "Yes")
    with pytest.raises(ValueError, match="benchmark must be"):
        xs.predict("cladder-v2", "final", "Yes")


TEXT = st.text(alphabet=st.characters(), max_size=300) | st.builds(
    lambda a, b, c: a + b + c, st.text(max_size=50), st.sampled_from(
        ["</think>", "<think>", "answer is ", "Answer: ", "\\boxed{", "option ", '"', "</s>", "\n", "²", "①"]),
    st.text(max_size=50))


@settings(max_examples=400, deadline=None)
@given(TEXT, st.booleans())
def test_no_scorer_raises_on_arbitrary_text(reply, opened):
    assert xs.cladder_official(reply) in ("yes", "no", None)
    assert xs.cladder_final(reply, opened=opened) in ("yes", "no", None)
    digit = xs.causalprobe_official(reply)
    assert digit is None or 0 <= digit <= 9
    assert xs.causalprobe_final(reply, opened=opened) in (None, 1, 2, 3, 4)
    chosen = xs.causalprobe_final_set(reply, opened=opened)
    assert chosen is None or (chosen and set(chosen) <= {1, 2, 3, 4})


def test_non_text_replies_read_as_invalid():
    for reply in (None, 3, b"Yes", ["Yes"]):
        assert xs.cladder_final(reply) is None and xs.causalprobe_official(reply) is None
