"""What a CauGym problem asks and how its answer is written: the seven types, LACK_CONDITION, the PROB string, the
type a question asks for, and the solver's Answer record. A leaf: it imports nothing from caujax, so the engine,
the loaders (`caujax.data`) and the scorers (`caujax.scoring`) share it without importing each other."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

TYPES = ("ATE", "CDE", "ETT", "NDE", "NIE", "PN", "PS")
EFFECT_TYPES = ("ATE", "CDE", "ETT", "NDE", "NIE")      # answered with Yes/No and a PROB; PN and PS with a PROB only
LACK_CONDITION = "LACK_CONDITION"                        # the whole answer when a needed probability is not given
STATUSES = ("ok", "lack_condition", "cannot_parse")

# DATA.md 1.4: the type from the question wording, first rule that fires; exact on every non-paraphrased CauGym
# file and on CaLM basic. `^` anchors at the start of the question (no MULTILINE); DOTALL lets `.*` cross lines.
_TYPE_RULES = (("PN", r"bound of the probability of the"), ("PS", r"bound of the probability that"),
               ("NDE", r"mediator keeps constant"), ("NIE", r"held constant and the mediator changes"),
               ("CDE", r"^Conditioned on"), ("ETT", r"^For those with .* if their"),
               ("ATE", r"^If .* is changed to be"))


def infer_type(problem: str) -> str | None:
    """The causal quantity a problem asks for, from the text after its last `Question:` (the whole text when there
    is none, so a bare question works too); None when no rule fires."""
    question = problem.rsplit("Question:", 1)[-1].strip()
    for name, pattern in _TYPE_RULES:
        if re.search(pattern, question, re.DOTALL):
            return name
    return None


def format_prob(value: float) -> str:
    """CauGym's PROB string: 4 decimals with trailing zeros stripped ("0.2390" -> "0.239", "1.0000" -> "1",
    -0.00001 -> "0").

    `:.4f` rounds the exact binary value correctly (half to even), as `round(value, 4)` does, so raw values (CaLM's
    gt_answer) and values the solver already rounded with `round4` give the same string; no pre-rounding needed."""
    text = f"{float(value):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True)
class Answer:
    """status "ok": prob (4 decimals) and, for effect types, answer Yes/No. "lack_condition": a needed probability
    is not given. "cannot_parse": the solver abstains; `reason` says what it could not read."""

    type: str | None
    prob: float | None
    answer: str | None
    status: str = "ok"
    reason: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "ok" and self.prob is None:
            raise ValueError("an ok Answer needs prob")

    @property
    def lack_condition(self) -> bool:
        return self.status == "lack_condition"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> str:
        """The CauGym answer string: {"ANSWER": "Yes", "PROB": "0.3847"}, {"PROB": "0.239"} or LACK_CONDITION."""
        if self.status == "lack_condition":
            return LACK_CONDITION
        if self.status != "ok":
            raise ValueError(f"no CauGym answer string for an unparsed problem: {self.reason}")
        if self.type in EFFECT_TYPES:
            return json.dumps({"ANSWER": self.answer, "PROB": format_prob(self.prob)})
        return json.dumps({"PROB": format_prob(self.prob)})
