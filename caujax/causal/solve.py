"""Problem text -> Answer: parse (template wording first, then paraphrase-tolerant), compute, or say why not."""
from __future__ import annotations

import json
from dataclasses import dataclass

from caujax.causal.parse import ParseError, Parsed, parse_problem
from caujax.causal.tasks import EFFECT_TYPES, MissingFact, Solution, solve_query

STATUSES = ("ok", "lack_condition", "cannot_parse")


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
            return "LACK_CONDITION"
        if self.status != "ok":
            raise ValueError(f"no CauGym answer string for an unparsed problem: {self.reason}")
        if self.type in EFFECT_TYPES:
            return json.dumps({"ANSWER": self.answer, "PROB": format_prob(self.prob)})
        return json.dumps({"PROB": format_prob(self.prob)})


def format_prob(p: float) -> str:
    """4 decimals with trailing zeros stripped, as CauGym's ground truth: 0.2390 -> 0.239, 1.0000 -> 1, -0 -> 0."""
    s = f"{p:.4f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def answer_from_solution(sol: Solution) -> Answer:
    return Answer(sol.query.type, sol.prob, sol.answer)


def analyze(problem_text: str) -> tuple[Parsed, Solution]:
    """Parse in the template wording and solve; raises ParseError or MissingFact. Used by render and corrupt."""
    parsed = parse_problem(problem_text)
    return parsed, solve_query(parsed.graph, parsed.query, parsed.facts)


def solve(problem_text: str) -> Answer:
    """Solve one CauGym/CaLM problem from its text alone (no Type field, no lookups)."""
    if not isinstance(problem_text, str) or not problem_text.strip():
        return Answer(None, None, None, "cannot_parse", "empty problem text")
    from caujax.causal.paraphrase import solve_paraphrase    # imported here: it builds on Answer
    try:
        parsed = parse_problem(problem_text)
    except ParseError as e:
        return solve_paraphrase(problem_text, template_error=str(e))
    try:
        sol = solve_query(parsed.graph, parsed.query, parsed.facts)
    except MissingFact as e:
        if parsed.unread_numbers:
            # numbers the template did not read may be the missing facts in other words: never claim a lack then
            return solve_paraphrase(problem_text, template_error=f"{parsed.unread_numbers} numbers not in template "
                                                                 f"sentences and {e.term} not given")
        return Answer(parsed.query.type, None, None, "lack_condition", f"not given: {e.term}")
    except (ValueError, ZeroDivisionError) as e:
        return Answer(parsed.query.type, None, None, "cannot_parse", str(e))
    return answer_from_solution(sol)
