"""Which graph variable each value phrase of a CLadder item names: every reading the sentence forms allow.

CLadder (Jin et al., NeurIPS 2023) writes a variable's values in several forms: a noun ("ringing alarm", always
value 1 in "the probability of ..."), a where-sentence ("husbands that set the alarm", the first part of a
condition) and a where-partial (later parts). A phrase seldom repeats the variable's name ("are hard-working" for
effort), so the reading is searched rather than looked up:

* entities: each distinct noun, each distinct (value 0, value 1) pair of where-sentences, each distinct pair of
  where-partials; distinct entities of one form are distinct variables (a form is one string per value);
* a reading maps entities to graph nodes so that no conditional conditions on its own outcome or names one
  variable twice; a question phrase that is not a given noun ("qnoun", e.g. "not eating ice cream") may sit on
  any node;
* `cladder_search` keeps the readings under which the asked quantity is computable and compares their answers;
  `score` (word overlap of phrases with node names and with each other) ranks readings when answers differ.
"""
from __future__ import annotations

import itertools

from caujax.causal.cladder_math import Facts, Inputs
from caujax.causal.cladder_parse import CondGroup, Prior
from caujax.causal.cladder_words import similarity

NOUN, WHERE, PARTIAL, QNOUN = "noun", "where", "partial", "qnoun"


def slot_kind(j: int) -> str:
    return WHERE if j == 0 else PARTIAL


def entities(given) -> list[tuple[str, object]]:
    """Distinct (form, phrase or pair) entities of the given probabilities, in order of first use."""
    out = []

    def add(e):
        if e not in out:
            out.append(e)

    for item in given:
        if isinstance(item, Prior):
            add((NOUN, item.target))
        elif isinstance(item, CondGroup):
            add((NOUN, item.target))
            for j, pair in enumerate(item.slots):
                add((slot_kind(j), pair))
    return out


def readings(nodes, ents, given, fixed: dict, free_extra=()):
    """Every entity -> node map with the constraints above, depth first. `fixed` pins entities; `free_extra` are
    question entities that may share a node with anything."""
    order = [e for e in ents if e not in fixed] + [e for e in free_extra if e not in fixed]
    groups = [g for g in given if isinstance(g, CondGroup)]

    def ok(m):
        for form in (NOUN, WHERE, PARTIAL):
            used = [n for e, n in m.items() if e[0] == form and e in ents]
            if len(used) != len(set(used)):
                return False
        for g in groups:
            t = m.get((NOUN, g.target))
            s = [m.get((slot_kind(j), p)) for j, p in enumerate(g.slots)]
            known = [n for n in s if n is not None]
            if len(known) != len(set(known)) or (t is not None and t in known):
                return False
        return True

    def walk(i, m):
        if i == len(order):
            yield dict(m)
            return
        for n in nodes:
            m[order[i]] = n
            if ok(m):
                yield from walk(i + 1, m)
            del m[order[i]]

    start = dict(fixed)
    if ok(start):
        yield from walk(0, start)


def facts(inputs_by_item: dict, given, m: dict, inputs: Inputs) -> Facts | None:
    """The Facts table of one reading; None when two sentences would give the same probability."""
    table = {}
    for k, item in enumerate(given):
        if isinstance(item, Prior):
            key = (m[(NOUN, item.target)], frozenset())
            arrays = [inputs_by_item[k][0]]
            keys = [key]
        elif isinstance(item, CondGroup):
            t = m[(NOUN, item.target)]
            s = [m[(slot_kind(j), p)] for j, p in enumerate(item.slots)]
            n = len(s)
            keys = [(t, frozenset((s[j], (i >> (n - 1 - j)) & 1) for j in range(n))) for i in range(len(item.probs))]
            arrays = inputs_by_item[k]
        else:
            continue
        for key, a in zip(keys, arrays):
            if key in table:
                return None
            table[key] = a
    return Facts(inputs, table)


def given_inputs(given, inputs: Inputs) -> dict:
    """One interval input per printed probability: item index -> list of arrays (binary row order)."""
    out = {}
    for k, item in enumerate(given):
        if isinstance(item, Prior):
            out[k] = [inputs.given(item.p, item.half)]
        elif isinstance(item, CondGroup):
            out[k] = [inputs.given(p, item.half) for p in item.probs]
    return out


def phrases(entity) -> tuple[str, ...]:
    form, v = entity
    return (v,) if form in (NOUN, QNOUN) else tuple(v)


def score(m: dict, names: dict) -> float:
    """How well a reading fits the words: each entity's best overlap with its node's name, plus, for two entities
    on one node, their phrases' overlap with each other (a noun and the where-pair of the same variable)."""
    total = 0.0
    for e, n in m.items():
        total += max(similarity(p, names[n]) for p in phrases(e))
    for (e1, n1), (e2, n2) in itertools.combinations(m.items(), 2):
        if n1 == n2:
            total += max(max(similarity(a, b), similarity(b, a)) for a in phrases(e1) for b in phrases(e2))
    return total
