"""Problem text -> Answer: parse (template wording first, then paraphrase-tolerant), compute, or say why not."""
from __future__ import annotations

from caujax.causal.answer import Answer
from caujax.causal.paraphrase import solve_paraphrase
from caujax.causal.parse import ParseError, Parsed, parse_problem
from caujax.causal.tasks import MissingFact, Solution, solve_query


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
