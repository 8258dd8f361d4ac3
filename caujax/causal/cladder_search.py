"""Run a question's computation over every reading of its phrases (`cladder_roles`) and settle on one answer.

Each reading that makes the asked quantity computable gives a range (the value over the rounding of the printed
numbers, `cladder_math`) and a decision. The answer stands when every such reading decides the same way. When they
differ, the readings that fit the words best (`cladder_roles.score`) decide, if they agree among themselves and fit
clearly better (by MARGIN) than every reading with another decision; otherwise the solver abstains. It abstains
too when the reading that answers fits the words clearly worse than some reading under which the quantity is not
computable: the text then most likely means that reading.
"""
from __future__ import annotations

from dataclasses import dataclass

from caujax.causal.cladder_answer import Abstain
from caujax.causal.cladder_math import Inputs, span
from caujax.causal.cladder_roles import (NOUN, PARTIAL, QNOUN, WHERE, entities, facts, given_inputs, readings,
                                          score)
from caujax.causal.cladder_words import value_of

MARGIN = 0.5              # word-overlap score (in matched-word shares) the best reading must lead other answers by
MAX_READINGS = 5000       # CLadder texts have at most a few hundred readings: abstain rather than search on
MAX_SPACE = 2_000_000     # nodes ** entities above this is not a CLadder text either


@dataclass(frozen=True)
class Found:
    reading: dict
    roles: str            # which node plays which part, for the derivation
    point: float          # the quantity at the printed numbers
    lo: float             # its range over their rounding
    hi: float
    label: str            # the identification used
    answer: str | None    # None: the range holds values with different answers


def noun_entity(parsed, phrase: str, what: str):
    if (NOUN, phrase) not in entities(parsed.given):
        raise Abstain(f"cannot parse: the {what} {phrase!r} is not a phrase of the given probabilities")
    return (NOUN, phrase)


def pair_of(m: dict, node: str, ents) -> tuple[str, str] | None:
    """The where-sentence pair (else where-partial pair) that a reading puts on `node`."""
    for form in (WHERE, PARTIAL):
        for e in ents:
            if e[0] == form and m.get(e) == node:
                return e[1]
    return None


def population(ents, phrase: str):
    """The where-pair entity and value a population phrase ("people who are famous") names: the phrase equals one
    of a pair's phrases, else ends with one ("are famous", the where-partial form of the same value)."""
    for test in (lambda p: phrase == p, lambda p: phrase.endswith(" " + p)):
        hits = {(e, v) for e in ents if e[0] in (WHERE, PARTIAL) for v, p in enumerate(e[1]) if test(p)}
        if len(hits) == 1:
            return hits.pop()
        if hits:
            break
    raise Abstain(f"cannot parse: the population {phrase!r} is not one given value phrase")


def treatment(m: dict, phrase: str, ents) -> tuple[str | None, int | None]:
    """Node and value a question's treatment phrase names under reading m: a given noun is value 1 (CLadder's
    nouns in "the probability of ..." are value-1 phrases); any other phrase is compared with the where-pair of its
    node (negation and distinguishing words, `cladder_words.value_of`)."""
    if (NOUN, phrase) in ents:
        return m[(NOUN, phrase)], 1
    node = m.get((QNOUN, phrase))
    pair = pair_of(m, node, ents)
    return node, (None if pair is None else value_of(phrase, pair))


def search(parsed, extra, compute, decide, what: str, rule: str) -> tuple[str, float, str]:
    """compute(m, facts) -> None or (roles, [(label, array)]); decide(lo, hi) -> "yes"/"no"/None; `rule` says in
    words how the question turns the value into yes/no. Returns (answer, value, derivation) or raises Abstain."""
    inputs = Inputs()
    arrays = given_inputs(parsed.given, inputs)
    ents = entities(parsed.given)
    if len(parsed.graph.nodes) ** (len(ents) + len(extra)) > MAX_SPACE:
        raise Abstain("cannot parse: too many variables and phrases for a CLadder question")
    found, best_fit = [], 0.0
    for k, m in enumerate(readings(parsed.graph.nodes, ents, parsed.given, {}, extra)):
        if k >= MAX_READINGS:
            raise Abstain(f"cannot parse: more than {MAX_READINGS} ways to read the phrases")
        best_fit = max(best_fit, score(m, parsed.names))
        f = facts(arrays, parsed.given, m, inputs)
        out = None if f is None else compute(m, f)
        if not out:
            continue
        roles, results = out
        spans = [span(a) for _, a in results]
        lo, hi = max(s[1] for s in spans), min(s[2] for s in spans)   # several valid estimates: intersect
        if lo > hi + 1e-9:
            continue                   # the estimates disagree beyond rounding: the reading is not consistent
        found.append(Found(m, roles, spans[0][0], lo, hi, results[0][0], decide(lo, hi)))
    if not found:
        raise Abstain(f"the given probabilities do not identify the {what} under any reading of the phrases")
    best = settle(found, parsed.names, what)
    if score(best.reading, parsed.names) < best_fit - MARGIN:
        # the words fit another reading clearly better, and under it the quantity is not computable
        raise Abstain(f"the given probabilities do not identify the {what} under the reading of the phrases that "
                      f"fits their words best")
    return best.answer, round(best.point, 6), (f"{what} = {best.point:+.4f} (range [{best.lo:+.4f}, {best.hi:+.4f}] "
                                               f"over the rounding of the given numbers and any probability the text "
                                               f"leaves open) by {best.label}; "
                                               f"{best.roles}; {rule}: {best.answer}")


def settle(found: list[Found], names: dict, what: str) -> Found:
    scored = sorted(((score(f.reading, names), i, f) for i, f in enumerate(found)), key=lambda t: (-t[0], t[1]))
    answers = {f.answer for f in found}
    if len(answers) == 1 and None not in answers:
        return scored[0][2]
    top_score = scored[0][0]
    top = [f for s, _, f in scored if s >= top_score - 1e-9]
    top_answers = {f.answer for f in top}
    others = [s for s, _, f in scored if f.answer not in top_answers]
    if len(top_answers) == 1 and (not others or others[0] < top_score - MARGIN):
        best = top[0]
        if best.answer is not None:
            return best
        raise Abstain(f"the {what} is {best.point:+.4f}, in [{best.lo:+.4f}, {best.hi:+.4f}] over the rounding of "
                      f"the given numbers (and any probability the text leaves open): the answer is not determined")
    raise Abstain(f"the phrases can name different variables, and the readings give different answers "
                  f"({len(found)} readings)")
