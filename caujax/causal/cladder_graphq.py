"""CLadder questions answered from the graph alone (Jin et al., NeurIPS 2023): backdoor adjustment sets (backadj)
and collider bias.

backadj: "Method 1/2" condition on a named set (or nothing); a method is correct when its set meets Pearl's backdoor
criterion (Causality, def. 3.3.1; `CausalGraph.is_backdoor_set`). One correct and one not: the correct one is "more
correct". Both correct: the smaller set is, as in CLadder, which always offers a minimal valid set against a
superfluous one (e.g. {V2} in X -> Y <- V2); equal sizes, or neither correct: abstain.

collider_bias: "If we look at C, does it mean that X affects Y?" The correlation among C-units says nothing about
causation; X affects Y iff the graph has a directed X -> Y path (`CausalGraph.has_path`).
"""
from __future__ import annotations

import itertools
import re

from caujax.causal.cladder_answer import Abstain, node_of
from caujax.causal.cladder_parse import Correlation, split_list
from caujax.causal.cladder_search import MARGIN
from caujax.causal.cladder_words import similarity

_GENERAL = re.compile(r"We look directly at (?:how (?P<x>.+) correlates with (?P<y>.+)|this correlation) in general")
_BY_CASE = re.compile(r"We look at (?:how (?P<x>.+) correlates with (?P<y>.+)|this correlation) case by case "
                      r"according to (?P<z>.+)")


def method_set(parsed, text: str, x: str, y: str) -> tuple[str, ...]:
    """The nodes a "Method k" text conditions on (empty for "directly ... in general")."""
    m = _GENERAL.fullmatch(text) or _BY_CASE.fullmatch(text)
    if m is None:
        raise Abstain(f"cannot parse: unrecognised method {text[:60]!r}")
    if m.group("x") is not None and (node_of(parsed, m.group("x")), node_of(parsed, m.group("y"))) != (x, y):
        raise Abstain(f"cannot parse: a method looks at {m.group('x')!r} and {m.group('y')!r}, not the question's pair")
    return tuple(node_of(parsed, n) for n in split_list(m.group("z"))) if "z" in m.groupdict() else ()


def solve_backadj(parsed, q):
    """"To understand how X affects Y, is it more correct to use the Method a than Method b?"."""
    x, y = node_of(parsed, q.parts["x"]), node_of(parsed, q.parts["y"])
    if len(parsed.methods) != 2:
        raise Abstain(f"cannot parse: {len(parsed.methods)} methods given (want Method 1 and Method 2)")
    sets = {k + 1: method_set(parsed, t, x, y) for k, t in enumerate(parsed.methods)}
    a, b = int(q.parts["a"]), int(q.parts["b"])
    if {a, b} != {1, 2}:
        raise Abstain("cannot parse: the question does not compare Method 1 with Method 2")
    ok = {k: parsed.graph.is_backdoor_set(x, y, z) for k, z in sets.items()}
    why = "; ".join(f"Method {k} conditions on {{{', '.join(z)}}}: {'valid' if ok[k] else 'not valid'}"
                    for k, z in sets.items())
    if ok[a] != ok[b]:
        return ("yes" if ok[a] else "no"), None, f"backdoor criterion for {x} -> {y}: {why}"
    if ok[a] and len(sets[a]) != len(sets[b]):
        return ("yes" if len(sets[a]) < len(sets[b]) else "no"), None, (
            f"backdoor criterion for {x} -> {y}: {why}; both valid, so the smaller set is the more correct one "
            f"(CLadder's convention: a minimal adjustment set against a superfluous one)")
    raise Abstain(f"neither method is more correct by the backdoor criterion: {why}")


def solve_collider(parsed, q):
    """The three phrases of the question (X, Y and the population C) go to three distinct nodes, each assignment
    scored by word overlap with the node names; the answer stands when every assignment gives it, or when the
    best one beats every assignment with the other answer by MARGIN."""
    corr = [g for g in parsed.given if isinstance(g, Correlation)]
    if len(corr) != 1:
        raise Abstain("cannot parse: collider bias needs one 'the correlation between' sentence")
    g = parsed.graph
    if len(g.nodes) < 3:
        raise Abstain("cannot parse: collider bias needs a graph of three variables at least")
    phrases = (q.parts["x"], q.parts["y"], q.parts["c"])
    best, answers = None, {}
    for nodes in itertools.permutations(g.nodes, 3):
        s = sum(similarity(p, parsed.names[n]) for p, n in zip(phrases, nodes))
        affects = g.has_path(nodes[0], nodes[1])
        answers.setdefault(affects, []).append((s, nodes))
    if len(answers) == 1:
        (affects, cands), = answers.items()
        best = max(cands)
    else:
        top = {k: max(v) for k, v in answers.items()}
        (k1, s1), (_, s2) = sorted(top.items(), key=lambda kv: -kv[1][0])
        if s1[0] - s2[0] < MARGIN:
            raise Abstain(f"cannot tell which variables {phrases} name: readings with and without an effect tie")
        affects, best = k1, s1
    x, y, c = best[1]
    answer = "yes" if affects == (q.polarity > 0) else "no"
    return answer, None, (f"X={x}, Y={y}, looking at {c}: X affects Y iff the graph has a directed path X -> Y; "
                          f"it has {'one' if affects else 'none'} (the correlation {corr[0].r:+.2f} among units "
                          f"selected on {c} is not an effect); the question asks "
                          f"'{'affects' if q.polarity > 0 else 'does not affect'}': {answer}")
