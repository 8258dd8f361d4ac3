"""The causal problem engine: graphs and binary SCMs, the seven CauGym quantities, solver, renderer, generator."""
from caujax.causal.corrupt import KINDS as CORRUPTION_KINDS
from caujax.causal.corrupt import Corruption, corrupt, corruptions
from caujax.causal.generate import generate
from caujax.causal.render import align_reason, problem_text, question_text, reason_steps, reason_text
from caujax.causal.scm import BinarySCM, CausalGraph
from caujax.causal.solve import Answer, analyze, format_prob, solve
from caujax.causal.tasks import TYPES, Facts, MissingFact, Query, Solution, Term, solve_query

__all__ = [
    "Answer", "solve", "analyze", "format_prob",
    "generate",
    "reason_steps", "reason_text", "question_text", "problem_text", "align_reason",
    "corrupt", "corruptions", "Corruption", "CORRUPTION_KINDS",
    "CausalGraph", "BinarySCM", "Query", "Term", "Facts", "Solution", "MissingFact", "solve_query", "TYPES",
]
