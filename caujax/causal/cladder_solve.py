"""Solve a CLadder question (Jin et al., "CLadder: Assessing Causal Reasoning in Language Models", NeurIPS 2023)
from its text alone: `solve_cladder(text) -> LadderAnswer`.

Pipeline: `cladder_parse` splits the text into the causal graph (a `caujax.causal.scm.CausalGraph`), the given
information and the question; `cladder_question` reads the question's template, polarity and phrases; then one
handler per query type:

  marginal, correlation, exp_away, ate, ett, nde, nie   cladder_probq (phrases -> variables by cladder_roles and
                                                       cladder_search; identification by cladder_effects;
                                                       interval arithmetic by cladder_math)
  backadj, collider_bias                               cladder_graphq (the graph alone)
  det-counterfactual                                   cladder_det (Boolean mechanisms)

It reads nothing but the text: no gold field, id or file. It abstains ("cannot_parse", with the reason) whenever the
text does not pin the answer down: a sentence outside CLadder's wording, phrases that can name different variables
with different answers, a quantity the given probabilities do not identify, or a value whose range over the
rounding of the printed numbers holds both answers.
"""
from __future__ import annotations

from caujax.causal import cladder_probq as probq
from caujax.causal.cladder_answer import Abstain, LadderAnswer, abstain
from caujax.causal.cladder_det import solve_deterministic
from caujax.causal.cladder_graphq import solve_backadj, solve_collider
from caujax.causal.cladder_math import Missing
from caujax.causal.cladder_parse import CladderParseError, parse_text, split_sentences
from caujax.causal.cladder_question import read_question

__all__ = ["LadderAnswer", "solve_cladder"]

HANDLERS = {"marginal": probq.marginal, "correlation": probq.correlation, "exp_away": probq.exp_away,
            "ate": probq.ate, "ett": probq.ett, "nde": probq.natural, "nie": probq.natural,
            "backadj": solve_backadj, "collider_bias": solve_collider, "det-counterfactual": solve_deterministic}


def solve_cladder(text: str) -> LadderAnswer:
    """One CLadder question text -> LadderAnswer ("ok" with yes/no, or "cannot_parse" with the reason). Never
    raises: an unexpected error inside a handler is returned as an abstention naming it."""
    if not isinstance(text, str) or not text.strip():
        return abstain(None, "cannot parse: empty text")
    sentences = split_sentences(text)
    q = read_question(sentences[-1]) if sentences else None
    kind = q.kind if q else None
    try:
        parsed = parse_text(text)
        if q is None:
            raise CladderParseError(f"cannot parse: unrecognised question {sentences[-1][:60]!r}")
        answer, value, reason = HANDLERS[q.kind](parsed, q)
    except (Abstain, Missing, CladderParseError) as e:
        return abstain(kind, str(e))
    except Exception as e:  # noqa: BLE001 -- a bug must not stop a benchmark run; the report lists it as an abstention
        return abstain(kind, f"internal error: {type(e).__name__}: {e}")
    return LadderAnswer("ok", answer, kind, value, reason)
