"""Answer scoring: CauGym's paper scorer (bit-exact), a strict scorer, and the RL reward built on the strict one."""
# The paper rule (CauGym eval/sample_evaluate.py and sample_insuff_evaluate.py):
#   1. remove every whitespace character (`re.sub(r'\s+', '', response)`);
#   2. find every `{"ANSWER":...}` / `{"PROB":...}` with `re.findall(r'\{\"(?:ANSWER|PROB)\"\:.*?\}', ...)`;
#   3. lower-case each match, `json.loads` it, read `.get("prob")`; anything `float(str(value))` accepts is a
#      candidate, parse failures are skipped;
#   4. the ground truth is parsed the same way, taking its last value;
#   5. correct iff ANY candidate c has |gt - c| < 0.0005 (strict);
#   6. the insufficient set (answer `LACK_CONDITION`) is correct iff "LACK_CONDITION" is a substring anywhere.
# A model is thus credited for a number in its thinking or a restatement of the format example `0.1234`.
#
# The strict rule keeps the same syntax but reads only the final answer (text after the last `</think>`) and only
# its LAST parseable JSON object; insufficient items need LACK_CONDITION in the final answer and no numeric PROB
# there (`{"PROB": "LACK_CONDITION"}` commits to no number and is allowed). A reply whose thinking is still open at
# its end (cut at the length cap before `</think>`) has no final answer at all: whatever it wrote was a draft
# (issue 13, kind 3). Chat templates that open `<think>` in the prompt (DeepSeek-R1-Distill, Qwen3 thinking
# variants) leave the reply inside the thinking from its first token, so the caller passes `opened=True` for them
# (`prompt_opens_thinking` reads the templated prompt); the paper rule ignores all of this, as the script does.
#
# Extension (not in the paper): a ground truth with an ANSWER but no PROB (CaLM natural Yes/No items) is scored
# on the lower-cased ANSWER value, any match for "paper", the last one for "strict".
#
# Two differences from running the original script, neither changing a verdict it gives: the regex scan is
# re-implemented in linear time (the original `.*?` findall is quadratic when many `{"PROB":` openers have no
# closing brace: minutes per megabyte), and a match that makes `json.loads` raise something other than JSONDecodeError
# (RecursionError on deeply nested arrays, ValueError on integers over 4,300 digits, where the script crashes) is
# skipped like any other unparseable match.
import functools
import json
import math
import re
from typing import Literal, NamedTuple

from caujax.causal.answer import LACK_CONDITION

Rule = Literal["paper", "strict"]
RULES: tuple[Rule, ...] = ("paper", "strict")
TOLERANCE = 0.0005          # the paper's |pred - gt| < 0.0005
THINK_START = "<think>"
THINK_END = "</think>"
# RL reward: 1 for a strictly correct answer, FORMAT_REWARD for a wrong but well-formed final answer (a PROB JSON
# that parses to a float, or LACK_CONDITION), 0 otherwise. Small enough that guessing never beats solving.
FORMAT_REWARD = 0.1

_WHITESPACE = re.compile(r"\s+")
# Only the fixed opener is searched with a regex; the lazy `.*?\}` tail is done with str.find (see _json_matches).
_OPENER = re.compile(r'\{"(?:ANSWER|PROB)":')


class Parsed(NamedTuple):
    """One regex match that json.loads accepted: its `prob` as a float (None if absent or not a number), and its
    `answer` value lower-cased as a string (None if absent)."""
    prob: float | None
    answer: str | None


def _json_matches(text: str) -> list[str]:
    """Exactly `re.findall(r'\\{\\"(?:ANSWER|PROB)\\"\\:.*?\\}', re.sub(r'\\s+', '', text), re.DOTALL)`, in O(n).

    findall tries each opener left to right; a match runs to the first `}` after the opener and the scan resumes
    after it. If no `}` follows an opener, none follows any later opener either, so the scan can stop: that is
    what removes the quadratic rescans the backtracking engine does."""
    s = _WHITESPACE.sub("", text)
    out, pos = [], 0
    while (m := _OPENER.search(s, pos)) is not None:
        close = s.find("}", m.end())
        if close < 0:
            break
        out.append(s[m.start():close + 1])
        pos = close + 1
    return out


def _parse(match: str) -> Parsed | None:
    try:
        obj = json.loads(match.lower())
    except (ValueError, RecursionError):       # JSONDecodeError is a ValueError; see the module docstring
        return None
    if not isinstance(obj, dict):              # cannot happen for a `{...}` match; kept so this never raises
        return None
    prob = obj.get("prob")
    value = None
    if prob is not None:
        try:
            value = float(str(prob))           # the script's str() then float(): "1_0", "٠.٥", 0.5 all count
        except (ValueError, OverflowError):
            value = None
    answer = obj.get("answer")
    return Parsed(value, None if answer is None else str(answer).lower())


def parse_all(text: str) -> list[Parsed]:
    """Every answer JSON in `text` that json.loads accepts, in order (the paper's candidate list, before float)."""
    return [p for m in _json_matches(text) if (p := _parse(m)) is not None]


def thinking_open(text: str, opened: bool = False) -> bool:
    """Is a `<think>` block open at the end of `text`? The last tag decides (`<think>` opens, `</think>` closes);
    a text with neither tag stays in the state it started in, `opened`."""
    start, end = text.rfind(THINK_START), text.rfind(THINK_END)       # "<think>" is no substring of "</think>"
    return opened if start < 0 and end < 0 else start > end


def prompt_opens_thinking(prompt: str) -> bool:
    """Does a templated prompt (generation prompt included) leave the reply inside `<think>`? True for templates
    that end in `<think>\\n` (R1-Distill, Qwen3-Thinking-2507); False when the prompt closes it again
    (`<think>\\n\\n</think>`: Qwen3 with thinking off) or never opens it."""
    return thinking_open(prompt)


def final_answer(response: str, *, opened: bool = False) -> str | None:
    """The reply's final answer: the text after the last `</think>`, or the whole reply when it has no tag and
    did not start inside thinking; None when thinking is open at the end (`thinking_open(response, opened)`): a
    reply cut at the length cap mid-thought, or one whose prompt opened `<think>` and that never closed it.

    opened: the prompt left the reply inside `<think>` (`prompt_opens_thinking`). Such a reply carries only
    `</think>`, and one truncated before it carries no tag at all."""
    if thinking_open(response, opened):
        return None
    cut = response.rfind(THINK_END)
    return response if cut < 0 else response[cut + len(THINK_END):]


def check_tags_survive_decoding(tokenizer) -> None:
    """Raise ValueError when decoding with skip_special_tokens=True (how the sampler and rollouts decode replies)
    drops `</think>`: a reply whose prompt opened thinking would then never show where its answer starts, and
    every such reply would score as unfinished."""
    ids = tokenizer(THINK_END, add_special_tokens=False)["input_ids"]
    if THINK_END not in tokenizer.decode(ids, skip_special_tokens=True):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ValueError(f"tokenizer {name!r} marks {THINK_END} as a special token that decoding drops, but its "
                         f"chat template opens {THINK_START} in the prompt: the scorer could not find the final "
                         f"answer; mark {THINK_END} as a non-special added token")


class GroundTruth(NamedTuple):
    kind: Literal["prob", "yes_no", "insufficient"]
    prob: float | None = None
    answer: str | None = None


@functools.lru_cache(maxsize=65536)
def parse_ground_truth(answer: str) -> GroundTruth:
    """Parse a CauGym/CaLM `answer` string. Raises ValueError when it holds neither PROB, ANSWER nor LACK_CONDITION:
    a bad ground truth is a data bug, unlike a bad response."""
    if answer.strip() == LACK_CONDITION:
        return GroundTruth("insufficient")
    parsed = parse_all(answer)
    probs = [p.prob for p in parsed if p.prob is not None]
    if probs:
        return GroundTruth("prob", prob=probs[-1])              # the script's `float(gt_answer[-1])`
    answers = [p.answer for p in parsed if p.answer is not None]
    if answers:
        return GroundTruth("yes_no", answer=answers[-1])
    raise ValueError(f"ground-truth answer {answer[:200]!r} has no PROB, no ANSWER and is not {LACK_CONDITION}")


def _close(pred: float | None, gt: float) -> bool:
    return pred is not None and abs(gt - pred) < TOLERANCE     # NaN compares False, as in the script


def _score_paper(response: str, gt: GroundTruth) -> bool:
    if gt.kind == "insufficient":
        return LACK_CONDITION in response
    parsed = parse_all(response)
    if gt.kind == "prob":
        return any(_close(p.prob, gt.prob) for p in parsed)
    return any(p.answer == gt.answer for p in parsed)


def _score_strict(response: str, gt: GroundTruth, opened: bool) -> bool:
    final = final_answer(response, opened=opened)
    if final is None:                                 # still thinking: no answer, not even LACK_CONDITION
        return False
    parsed = parse_all(final)
    if gt.kind == "insufficient":
        return LACK_CONDITION in final and not any(p.prob is not None for p in parsed)
    if not parsed:
        return False
    last = parsed[-1]
    return _close(last.prob, gt.prob) if gt.kind == "prob" else last.answer == gt.answer


def score(response: str, answer: str, rule: Rule = "paper", *, opened: bool = False) -> bool:
    """Is `response` correct for the ground-truth `answer` string under `rule` ("paper" or "strict")?

    opened: the prompt left the reply inside `<think>` (`prompt_opens_thinking`); only the strict rule reads it.
    Never raises on any response (any text, any length); raises ValueError only for an unknown rule or a
    ground truth that holds no answer."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if not isinstance(response, str):
        return False
    gt = parse_ground_truth(answer)
    return _score_paper(response, gt) if rule == "paper" else _score_strict(response, gt, opened)


def well_formed(response: str, answer: str, *, opened: bool = False) -> bool:
    """Does the final answer commit to something scoreable for this kind of item: LACK_CONDITION, or a last JSON
    with a finite PROB (an ANSWER for Yes/No items)? False when there is no final answer (thinking open at the
    end; `opened` as in `score`). Used for the format term of `reward`."""
    if not isinstance(response, str):
        return False
    final = final_answer(response, opened=opened)
    if final is None:
        return False
    if LACK_CONDITION in final:
        return True
    parsed = parse_all(final)
    if not parsed:
        return False
    if parse_ground_truth(answer).kind == "yes_no":
        return parsed[-1].answer in ("yes", "no")
    return parsed[-1].prob is not None and math.isfinite(parsed[-1].prob)


def reward(response: str, answer: str, *, opened: bool = False) -> float:
    """RL reward: 1.0 if correct under the strict rule, FORMAT_REWARD (0.1) if wrong but well formed, else 0.0
    (also 0.0 for a reply still thinking at its end; `opened` as in `score`).

    Built on the strict rule, never the paper rule: with "any JSON anywhere counts" a policy learns to print
    many numbers. The format term gives a signal toward the required output before any answer is right."""
    if score(response, answer, "strict", opened=opened):
        return 1.0
    return FORMAT_REWARD if well_formed(response, answer, opened=opened) else 0.0
