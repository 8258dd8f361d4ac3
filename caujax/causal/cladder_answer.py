"""The CLadder solver's answer record and the abstention it raises internally.

A leaf of the CLadder solver modules (cladder_*): the question handlers raise `Abstain` with a reason whenever the
text does not pin the answer down, and `cladder_solve.solve_cladder` turns that into a "cannot_parse" answer.
"""
from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("ok", "cannot_parse")
# CLadder's query types in its rung order, and the rung of each (Jin et al. 2023, table 1); the loader, the
# generator and the tables all read these.
QUERY_TYPES = ("marginal", "correlation", "exp_away", "ate", "backadj", "collider_bias", "ett", "nde", "nie",
               "det-counterfactual")
RUNG_OF = {"marginal": 1, "correlation": 1, "exp_away": 1, "ate": 2, "backadj": 2, "collider_bias": 2, "ett": 3,
           "nde": 3, "nie": 3, "det-counterfactual": 3}


@dataclass(frozen=True)
class LadderAnswer:
    """status "ok": `answer` is "yes"/"no"; `value` is the number behind it where there is one (the ATE, P(Y=1),
    the difference of two conditionals, 1.0/0.0 for a deterministic outcome; None for graph-only questions) at the
    printed numbers; `reason` a one-line derivation. "cannot_parse": the solver abstains and `reason` says why.
    query_type: the CLadder query type the question's own wording asks (None when the question was not read)."""

    status: str
    answer: str | None
    query_type: str | None
    value: float | None
    reason: str

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if (self.status == "ok") != (self.answer in ("yes", "no")):
            raise ValueError(f"status {self.status!r} with answer {self.answer!r}")


class Abstain(Exception):
    """The text does not pin the answer down; the message is the reason."""


def abstain(kind: str | None, reason: str) -> LadderAnswer:
    return LadderAnswer("cannot_parse", None, kind, None, reason)


def node_of(parsed, name: str) -> str:
    """The graph node a question names ("husband", "Husband"); Abstain when the graph has no such variable."""
    key = name.strip().lower()
    if key not in parsed.graph.nodes:
        raise Abstain(f"cannot parse: {name!r} is not a variable of the graph")
    return key
