"""The causal problem engine: graphs and binary SCMs, the seven CauGym quantities, solver, renderer, generator."""
from caujax.causal.answer import EFFECT_TYPES, LACK_CONDITION, TYPES, Answer, format_prob, infer_type
from caujax.causal.corrupt import KINDS as CORRUPTION_KINDS
from caujax.causal.corrupt import Corruption, corrupt, corruptions
from caujax.causal.generate import generate
from caujax.causal.render import align_reason, problem_text, question_text, reason_steps, reason_text
from caujax.causal.scm import BinarySCM, CausalGraph
from caujax.causal.solve import analyze, solve
from caujax.causal.tasks import Facts, MissingFact, Query, Solution, Term, solve_query

__all__ = [
    "Answer", "solve", "analyze", "format_prob", "infer_type", "TYPES", "EFFECT_TYPES", "LACK_CONDITION",
    "generate",
    "reason_steps", "reason_text", "question_text", "problem_text", "align_reason",
    "corrupt", "corruptions", "Corruption", "CORRUPTION_KINDS",
    "CausalGraph", "BinarySCM", "Query", "Term", "Facts", "Solution", "MissingFact", "solve_query",
]
