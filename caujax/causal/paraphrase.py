"""Paraphrase-tolerant solving: read rewritten problems by meaning (variables, values, fact roles), or abstain.

Only reached when the template parser fails. Every step that cannot decide abstains with a reason; the result is
accepted only if one reading uses every given probability and all readings that do agree on the answer.
"""
from __future__ import annotations

import itertools
import re

from caujax.causal import mentions as mx
from caujax.causal.answer import EFFECT_TYPES, Answer
from caujax.causal.question import bound_word, question_roles, read_question
from caujax.causal.tasks import Facts, MissingFact, Query, Term, decide, evaluate, round4
from caujax.causal.wording import (NUMBER, PROB_WORDS, Abstain, fact_clauses, graph_phrases, instruction_pair,
                                   sections, task_type)


def solve_paraphrase(text: str, template_error: str = "") -> Answer:
    """An Answer for a rewritten problem, or status "cannot_parse" with the step that could not decide."""
    try:
        qtype, value, answer = _solve(text)
    except Abstain as e:
        why = f"not in the template wording ({template_error}); " if template_error else ""
        return Answer(None, None, None, "cannot_parse", f"{why}paraphrase reader abstained: {e}")
    return Answer(qtype, round4(value), answer)


def read_fact(clause: str, inv: mx.Inventory, prev, continued: bool = False, history=()):
    """(targets, givens, p) with targets/givens lists of (var, value word); anaphora reuse the previous fact."""
    p = float(NUMBER.search(clause).group(0))
    toks = mx.tokenize(clause)
    ms = [m for m in mx.find_mentions(toks, inv)]
    kw = next((i for i, t in enumerate(toks) if t.text in PROB_WORDS), None)
    words = [t.text for t in toks]
    anaphoric = kw is None
    if kw is None:
        # "..., and when both A and B are high, it increases further to 0.92": the previous target again
        if prev is None or not ({"it", "this", "that"} & set(words)):
            raise Abstain(f"no probability word in {clause[:100]!r}")
        kw = len(toks)
    after = [m for m in ms if m.start > kw]
    # conditions introduced after the target ("the probability of Y given X")
    cond_after = next((i for i in range(kw + 1, len(toks)) if words[i] in ("given", "when", "if", "among", "|")
                       or words[i:i + 2] == ["for", "those"]), len(toks))
    targets = [m for m in after if m.start < cond_after]
    givens = [m for m in ms if m.start < kw] + [m for m in after if m.start >= cond_after]
    if not targets and not anaphoric:
        # "Y has a 0.87 probability of being low" / "Y is low with probability 0.68": the last mention before
        # the probability word in the main clause is the target
        main = [m for m in ms if m.start < kw and "," not in words[m.end:kw] and kw - m.end <= 6]
        if main:
            targets, givens = [main[-1]], [m for m in ms if m is not main[-1]]
            if targets[0].value is None:
                v = next((w for w in words[kw:] if mx.is_value_word(w)), None)
                targets[0].value = v
    if not targets:
        if prev is None:
            raise Abstain(f"no target in {clause[:100]!r}")
        if "both" in words[kw:] and prev[0] and len(prev[0]) == 2:      # "the probability of both being high"
            v = next((w for w in words[kw:] if mx.is_value_word(w)), None)
            if v is None:
                raise Abstain(f"no value in {clause[:100]!r}")
            return [(var, v) for var, _ in prev[0]], [], p
        here = {m.var for m in givens}
        # the latest earlier fact whose target is not among this clause's conditions ("... the probability is 0.79")
        ante = next((h for h in reversed(history) if not {v for v, _ in h[0]} & here), prev) if history else prev
        tgt = list(ante[0])
        given = dict(ante[1])
        for m in givens:
            given[m.var] = m.value
        if None in given.values():
            raise Abstain(f"a variable without a value in {clause[:100]!r}")
        return tgt, list(given.items()), p
    if any(m.value is None for m in targets + givens):
        raise Abstain(f"a variable without a value in {clause[:100]!r}")
    tg, gv = [(m.var, m.value) for m in targets], [(m.var, m.value) for m in givens]
    if continued and not gv and prev and prev[1] and [v for v, _ in tg] == [v for v, _ in prev[0]]:
        gv = list(prev[1])          # "Among A high, B is low with 0.43, while B is high with 0.57"
    return tg, gv, p


# ----------------------------------------------------------------------------------------------- solve
def _codes(values_by_var: dict) -> dict:
    """Value word -> 0/1 per variable from the polarity lexicon; unknown words take the free code."""
    out = {}
    for var, words in values_by_var.items():
        words = list(dict.fromkeys(words))
        known = {w: (mx.polarity(w) > 0) * 1 for w in words if mx.polarity(w) is not None}
        unknown = [w for w in words if w not in known]
        codes = dict(known)
        used = set(known.values())
        if len(unknown) > 2 - len(used) or (unknown and len(set(words)) > 2):
            raise Abstain(f"cannot code the values {words} of one variable")
        for w in unknown:
            free = [c for c in (0, 1) if c not in used]
            codes[w] = free[0]
            used.add(free[0])
        out[var] = codes
    return out


def _solve(text: str):
    body, instruction, question = sections(text)
    qtype = task_type(instruction, question, body)
    if qtype is None:
        raise Abstain("cannot tell the task type")
    phrases, edges = graph_phrases(body)
    pair = instruction_pair(instruction) if instruction else None
    if pair is None:              # omitted rewrites often keep "the <type name> of X on Y" inside a sentence
        for sent in re.split(r"(?<=[.?!,])\s+", body + " " + question):
            pair = instruction_pair(sent)
            if pair:
                break
    inv = mx.Inventory(phrases)
    if pair:
        linked = [inv.alias(p) for p in pair]
        if None in linked or linked[0] == linked[1]:
            inv = mx.Inventory(phrases + list(pair))
            linked = [inv.link(mx.content_tokens(p)) for p in pair]
        inv.preferred = {v for v in linked if v is not None}
    else:                         # ties between reworded names go to the variables the question names
        inv.preferred = {m.var for m in mx.find_mentions(mx.tokenize(question), inv)}
    if len(inv.vars) < 2:
        raise Abstain("no variables found in the graph description")
    clauses = fact_clauses(body)
    if not clauses:               # only the roles matter: the answer can only be the non-cause 0
        X, Y, _, _ = question_roles(question, pair, inv)
        return _no_data(qtype, X, Y, inv, edges)
    X, Y, xw, yw, conds, bound, factual, y_factual = read_question(question, pair, inv, qtype in ("ETT", "PN", "PS"))
    if bound is None and qtype in ("PN", "PS"):
        bound = bound_word(instruction)
    raw, prev = [], None
    for c, cont in clauses:
        prev = read_fact(c, inv, prev, cont, raw)
        raw.append(prev)
    words = {}
    for tg, gv, _ in raw:
        for v, w in (*tg, *gv):
            words.setdefault(v, []).append(w)
    for v, w in ((X, xw), (Y, yw), *conds, *((X, f) for f in factual), *((Y, f) for f in y_factual)):
        if w is not None:
            words.setdefault(v, []).append(w)
    codes = _codes(words)
    fx = {codes[X][f] for f in factual}
    if len(fx) > 1:
        raise Abstain("two different factual treatment values")
    x = codes[X][xw] if xw is not None else 1 - fx.pop() if fx else None
    if x is None:
        raise Abstain("no hypothetical treatment value")
    if fx and x in fx:
        raise Abstain("factual and hypothetical treatment values coincide")
    fy = {codes[Y][f] for f in y_factual}
    if len(fy) > 1 or (yw is not None and codes[Y][yw] in fy):
        raise Abstain("inconsistent factual and hypothetical outcome values")
    y = codes[Y][yw] if yw is not None else 1 - fy.pop()
    facts = Facts()
    for tg, gv, p in raw:
        t = Term(tuple((v, codes[v][w]) for v, w in tg), tuple((v, codes[v][w]) for v, w in gv))
        if len({v for v, _ in (*t.target, *t.given)}) != len(t.target) + len(t.given):
            raise Abstain("a variable appears twice in one fact")
        facts.add(t, p)
    if facts.conflicts:
        raise Abstain("two different numbers for one probability")
    if qtype in ("PN", "PS") and bound is None:
        raise Abstain("cannot tell lower or upper bound")
    given = tuple((v, codes[v][w]) for v, w in conds) if qtype == "CDE" else ()
    q = Query(qtype, X, Y, x, y, given, bound if qtype in ("PN", "PS") else None)
    value = _fit(q, facts)
    return qtype, value, decide(qtype, value)


def _fit(q: Query, facts: Facts) -> float:
    """The value of q under every role assignment of the other variables that uses all given facts."""
    used_vars = {v for key, _ in facts.items() for part in key for v, _ in part}
    others = sorted(used_vars - {q.treatment, q.outcome} - {v for v, _ in q.given})
    if len(others) > 3:
        raise Abstain("too many other variables in the facts")
    results = set()
    for k in range(len(others) + 1):
        for Z in itertools.combinations(others, k):
            rest = [o for o in others if o not in Z]
            for M in _mediator_options(q.type, rest):
                if set(rest) - set(M):
                    continue
                try:
                    val, terms, _ = evaluate(q, facts, Z, M)
                except (MissingFact, ValueError, ZeroDivisionError):
                    continue
                used = {t.key for t, _ in terms} | {t.complement().key for t, _ in terms if t.complement()}
                if all(key in used for key, _ in facts.items()):
                    results.add(round4(val))
    if len(results) != 1:
        raise Abstain("no single reading uses all the given probabilities" if not results
                      else f"readings disagree: {sorted(results)}")
    return results.pop()


def _mediator_options(qtype, rest):
    if qtype in ("NDE", "NIE"):
        return [list(c) for k in range(len(rest) + 1) for c in itertools.combinations(rest, k)
                if qtype == "NDE" or k > 0]
    return [[]]


def _no_data(qtype, X, Y, inv, edges):
    """No probabilities given: the answer is 0 only if the graph rules the effect out; otherwise abstain."""
    if qtype not in EFFECT_TYPES:
        raise Abstain("a bound problem without probabilities")
    links = set()
    for a, b in edges:
        ia = inv.link(mx.content_tokens(a))
        ib = inv.link(mx.content_tokens(b))
        if ia is None or ib is None:
            raise Abstain(f"cannot read the graph statement {a!r} -> {b!r}")
        links.add((ia, ib))
    if not links:
        raise Abstain("no graph statements found")
    reach = {X}
    frontier = [X]
    while frontier:
        n = frontier.pop()
        for a, b in links:
            if a == n and b not in reach:
                reach.add(b)
                frontier.append(b)
    path = Y in reach
    edge = (X, Y) in links
    mediated = any(a == X and b != Y and _reaches(links, b, Y) for a, b in links)
    cause = {"ATE": path, "ETT": path, "CDE": edge, "NDE": edge, "NIE": mediated}[qtype]
    if cause:
        raise Abstain("no probabilities given although the graph shows an effect")
    return qtype, 0.0, "No"


def _reaches(links, a, b) -> bool:
    seen, stack = {a}, [a]
    while stack:
        n = stack.pop()
        if n == b:
            return True
        for s, t in links:
            if s == n and t not in seen:
                seen.add(t)
                stack.append(t)
    return False
