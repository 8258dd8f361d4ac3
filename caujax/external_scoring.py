"""Scorers of the two existing benchmarks: each official rule exactly, and a rule that reads a final answer.

CLadder official (causalNLP/cladder causalbenchmark/eval/run_gpt_v1.5.py, `response_processor.convert_to_norm`):
`str(reply).lower().strip().strip('"')`, then the prefixes longest first: "i'm sorry ", "neither ", "none ", "as a"
mean invalid, "yes" means yes, "no" means no, anything else is invalid. Prefix matching: "Nope" and "Not ..." read
as no, "Noted" too, and a reply that says yes or no only after a first sentence is invalid. Accuracy is over all
items, an invalid reply counting as wrong.

CausalProbe official (Haoang97/CausalProbe-2024 main.py `postprocess_output`, metrics.py `multiple_choice_match`,
utils.py `find_first_digit`): remove every "</s>" and every newline, drop one leading space, lower-case, and take
the first character anywhere for which `str.isdigit()` holds; right iff it equals the gold. A reply with no digit
is wrong in "overall exact match" and left out of "valid exact match". Digits inside words count ("In 2024 ..."
reads as 2). One difference, which changes no verdict the script gives: a digit character `int()` cannot read
("²", which `isdigit()` accepts) crashes the script; here it reads as its digit value (unicodedata.digit).
CausalProbe-M (a list of golds) has no working official scorer (the script compares an int with a list, always
False): `causalprobe_official` refuses it and the tables show no official number for M.

The final-answer rules are ours: a reasoning model writes its answer last, which the official prefix rule scores
wrong. They read the final answer (the text after the last `</think>`; nothing while thinking is still open, as
caujax.scoring.final_answer) and take, in order: the last explicit answer statement ("answer is no", "Answer: 3",
"option 3", "\\boxed{yes}"), else a yes/no word (CLadder) or choice number (CausalProbe) that opens the final
answer, else (CLadder) the last line that opens with yes or no. CausalProbe-M under this rule is an exact set
match: the choice numbers of the last answer statement must equal the gold set (our convention, as the data's
README suggests).

No scorer raises on any text; non-text replies read as invalid.
"""
from __future__ import annotations

import re
import unicodedata

from caujax.scoring import final_answer

# Longest first, as the script sorts them; None marks a refusal (invalid).
CLADDER_PREFIXES: tuple[tuple[str, str | None], ...] = (
    ("i'm sorry ", None), ("neither ", None), ("none ", None), ("as a", None), ("yes", "yes"), ("no", "no"))

_YES_NO_STATEMENT = re.compile(
    r"(?:answer\s*(?:is|:|=|would be|will be)|\\boxed\{\s*(?:\\text\{)?)\s*[*_\"'“”‘’(\[{\s]*(yes|no)\b",
    re.IGNORECASE)
_LINE_YES_NO = re.compile(r"^[\s*_`#>\"'“”‘’(\[{-]*(yes|no)\b", re.IGNORECASE | re.MULTILINE)
_CHOICE_STATEMENT = re.compile(
    r"(?:answer\s*(?:is|:|=|would be|will be)?|choice|option|\\boxed\{)\s*(?:is|:|=|number|no\.|#)?\s*"
    r"[*_\"'“”‘’(\[{\s]*([1-4])(?![\d.,]?\d)", re.IGNORECASE)
_CHOICE_LINE = re.compile(r"(?:answer\s*(?:is|:|=|would be|will be)?|choices?|options?|\\boxed\{)(.*)$",
                          re.IGNORECASE | re.MULTILINE)
_LEADING_CHOICE = re.compile(r"^[\s*_`#>\"'“”‘’(\[{]*([1-4])(?![\d.,]?\d)")
_CHOICE_NUMBER = re.compile(r"(?<![\d.])([1-4])(?![\d.,]?\d)")


def cladder_official(reply) -> str | None:
    """"yes", "no", or None (invalid or a refusal) by CLadder's official prefix rule (module docstring)."""
    value = str(reply).lower().strip().strip('"')
    for prefix, label in CLADDER_PREFIXES:
        if value.startswith(prefix):
            return label
    return None


def cladder_final(reply, *, opened: bool = False) -> str | None:
    """"yes", "no" or None from the final answer of a reply that may reason first (module docstring).
    opened: the prompt left the reply inside `<think>` (caujax.scoring.prompt_opens_thinking)."""
    if not isinstance(reply, str):
        return None
    final = final_answer(reply, opened=opened)
    if final is None:
        return None
    statements = _YES_NO_STATEMENT.findall(final)
    if statements:
        return statements[-1].lower()
    first = _LINE_YES_NO.match(final.lstrip())        # the official position, as a whole word ("Not" is no "no")
    if first:
        return first.group(1).lower()
    lines = _LINE_YES_NO.findall(final)
    return lines[-1].lower() if lines else None


def causalprobe_clean(reply: str) -> str:
    """The script's postprocess_output: drop "</s>" and newlines, then one leading space."""
    text = reply.replace("</s>", "").replace("\n", "")
    return text[1:] if text.startswith(" ") else text


def causalprobe_official(reply) -> int | None:
    """The first digit of the cleaned, lower-cased reply (module docstring), or None when it has none."""
    if not isinstance(reply, str):
        return None
    for ch in causalprobe_clean(reply).lower():
        if ch.isdigit():
            return unicodedata.digit(ch)      # int(ch) for every decimal digit; also reads "²" (the script crashes)
    return None


def causalprobe_final(reply, *, opened: bool = False) -> int | None:
    """The chosen number (1-4) of the final answer's last answer statement, else of its start; None otherwise."""
    if not isinstance(reply, str):
        return None
    final = final_answer(reply, opened=opened)
    if final is None:
        return None
    statements = _CHOICE_STATEMENT.findall(final)
    if statements:
        return int(statements[-1])
    lead = _LEADING_CHOICE.match(final)
    return int(lead.group(1)) if lead else None


def causalprobe_final_set(reply, *, opened: bool = False) -> tuple[int, ...] | None:
    """CausalProbe-M under our exact-set convention: the sorted distinct choice numbers on the line of the final
    answer's last answer statement (after its marker), else on its first line when that starts with a number."""
    if not isinstance(reply, str):
        return None
    final = final_answer(reply, opened=opened)
    if final is None:
        return None
    tails = [t for t in _CHOICE_LINE.findall(final) if _CHOICE_NUMBER.search(t)]
    if tails:
        text = tails[-1]
    else:
        first = final.strip().split("\n", 1)[0] if final.strip() else ""
        if not _LEADING_CHOICE.match(first):
            return None
        text = first
    return tuple(sorted({int(d) for d in _CHOICE_NUMBER.findall(text)})) or None


# Rule name -> (reads a reply into a prediction). "official" is each benchmark's own rule, "final" ours.
RULES = ("official", "final")


def predict(benchmark: str, rule: str, reply, *, multi: bool = False, opened: bool = False):
    """The prediction a rule reads from a reply: "yes"/"no" (CLadder), an int or a tuple of ints (CausalProbe, M
    when multi), or None for invalid. Raises ValueError for an unknown benchmark or rule, and for the official rule
    on CausalProbe-M, which has none."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if benchmark == "cladder":
        return cladder_official(reply) if rule == "official" else cladder_final(reply, opened=opened)
    if benchmark == "causalprobe":
        if multi:
            if rule == "official":
                raise ValueError("CausalProbe-M has no working official scorer (module docstring)")
            return causalprobe_final_set(reply, opened=opened)
        return causalprobe_official(reply) if rule == "official" else causalprobe_final(reply, opened=opened)
    raise ValueError(f"benchmark must be 'cladder' or 'causalprobe', got {benchmark!r}")
