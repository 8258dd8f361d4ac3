"""The question sentence of a CLadder item -> its query type, polarity and the phrases it names.

One regular expression per CLadder question template (Jin et al., NeurIPS 2023, `causalbenchmark/queries/*.py`).
`polarity` is +1 when the question asks about an increase / a positive effect / "more likely" / "affects", -1 for
the opposite wording; the answer is "yes" iff the quantity's class equals the polarity (see `cladder_math`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    kind: str                 # the CLadder query type the wording asks
    polarity: int             # +1 / -1 (0 where the wording has none: backadj, det-counterfactual)
    parts: dict               # named phrases of the sentence


_FORMS = (
    ("marginal", r"Is (?P<a>.+) (?P<pol>more|less) likely than (?P<b>.+) overall\?"),
    ("correlation", r"Is the chance of (?P<y>.+) (?P<pol>larger|smaller) when observing (?P<x>.+)\?"),
    ("exp_away", r"If we look at (?P<c>.+), does the chance of (?P<y>.+) (?P<pol>increase|decrease) when (?P<x>.+)\?"),
    ("collider_bias", (r"If we look at (?P<c>.+), does it mean that (?P<x>.+?) (?P<pol>affects|does not affect) "
                       r"(?P<y>.+)\?")),
    ("ate", r"Will (?P<x>.+) (?P<pol>increase|decrease) the chance of (?P<y>.+)\?"),
    ("backadj", (r"To understand how (?P<x>.+) affects (?P<y>.+), is it more correct to use the Method (?P<a>[12]) "
                 r"than Method (?P<b>[12])\?")),
    ("ett", r"For (?P<x>.+?), would it be (?P<pol>more|less) likely to see (?P<y>.+?) (?P<cf>if .+)\?"),
    ("nde", (r"If we disregard the mediation effect through (?P<m>.+), would (?P<x>.+) "
             r"(?P<pol>positively|negatively) affect (?P<y>.+)\?")),
    ("nie", r"Does (?P<x>.+) (?P<pol>positively|negatively) affect (?P<y>.+) through (?P<m>.+)\?"),
    ("det-counterfactual", r"Would (?P<y>.+) if (?P<new>.+) instead of (?P<old>.+)\?"),
)
_COMPILED = tuple((kind, re.compile(pattern)) for kind, pattern in _FORMS)
_POSITIVE = {"more", "larger", "increase", "affects", "positively"}


def read_question(sentence: str) -> Question | None:
    """The one template the sentence fits; None when it fits none or more than one."""
    found = []
    for kind, rx in _COMPILED:
        m = rx.fullmatch(sentence.strip())
        if m:
            parts = {k: v for k, v in m.groupdict().items() if k != "pol"}
            pol = m.groupdict().get("pol")
            found.append(Question(kind, 0 if pol is None else (1 if pol in _POSITIVE else -1), parts))
    return found[0] if len(found) == 1 else None
