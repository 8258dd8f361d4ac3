"""CLadder's deterministic counterfactuals (Jin et al., NeurIPS 2023, query type det-counterfactual).

"We know that A or B causes C. C causes not D." gives every mechanism as a Boolean formula of the node's parents;
"We observed ..." fixes source variables; "Would S if A' instead of A?" sets the treatment to A' and asks whether S
holds. With every exogenous variable known the counterfactual is a plain evaluation of the mutilated model
(Pearl's abduction-action-prediction with deterministic mechanisms, Causality ch. 7.1). Each node's state is
the truth of its reference phrase (the phrase that appears among causes, else its effect phrase); an effect written
in another wording ("penguin saddness" for a node whose cause phrase is "penguin happiness", or "not hwax") is that
node's other value. Unknown sources are enumerated: the answer stands only when it does not depend on them.
"""
from __future__ import annotations

import itertools
import re

from caujax.causal.cladder_answer import Abstain
from caujax.causal.cladder_search import MARGIN
from caujax.causal.cladder_words import content, flips, same_word, similarity

MAX_NODES = 8            # CLadder graphs have 3 or 4: a bigger text is not CLadder's, and the search is factorial


def clauses(rules) -> list[str]:
    """The "X causes Y" clauses of the rule sentences ("We know that A causes B, and we know that B causes C.")."""
    out = []
    for s in rules:
        s = re.sub(r"^We know that ", "", s.strip().rstrip("."))
        out.extend(re.split(r", and we know that ", s))
    return out


def _compositions(pieces: list[str], sep: str):
    """Every way to glue adjacent pieces back together (a phrase may contain the separator word)."""
    n = len(pieces)
    for cuts in itertools.product((0, 1), repeat=n - 1):
        parts, cur = [], pieces[0]
        for piece, cut in zip(pieces[1:], cuts):
            if cut:
                parts.append(cur)
                cur = piece
            else:
                cur = f"{cur}{sep}{piece}"
        yield parts + [cur]


def clause_readings(clause: str):
    """(op, causes, effects) readings of "L causes R"."""
    if clause.count(" causes ") != 1:
        return
    lhs, rhs = clause.split(" causes ")
    for op in ("and", "or"):
        for causes in _compositions(lhs.split(f" {op} "), f" {op} "):
            if len(causes) == 1 and op == "or":
                continue                   # a single cause is read once, under "and"
            for effects in _compositions(rhs.split(" and "), " and "):
                if len(effects) > 1 and len(causes) > 1:
                    continue
                yield op, tuple(causes), tuple(effects)


def base(phrase: str) -> tuple[str, int]:
    """"not hwax" -> ("hwax", 1): the phrase without a leading "not", and whether it had one."""
    return (phrase[4:], 1) if phrase.startswith("not ") else (phrase, 0)


def _atoms(clause: str) -> set[str]:
    """The phrases of a clause cut at every " and " / " or " (causes) and " and " (effects)."""
    lhs, _, rhs = clause.partition(" causes ")
    return {base(p)[0] for p in re.split(r" and | or ", lhs) + rhs.split(" and ")}


def _glued(phrase: str, graph, names: dict, other_atoms) -> bool:
    """Is a phrase read as one value really a list: do its " and "/" or " parts name two different variables ("the
    corporal shooting and the private shooting"), or is a part a phrase of its own in another clause that does not
    hold the whole ("rain" in "rain and sprinkler on")? ("college degree or higher" is neither.)"""
    parts = re.split(r" and | or ", phrase)
    if len(parts) < 2:
        return False
    if any(part in atoms and phrase not in text for part in parts for atoms, text in other_atoms):
        return True
    hits = [{n for n in graph.nodes if similarity(part, names[n]) > 0} for part in parts]
    return any(a and b and a != b for a, b in itertools.combinations(hits, 2))


def models(graph, cls, names: dict):
    """Every mechanism set the clauses can mean: (node -> (op, cause nodes, negated), node -> reference phrase).
    Causes are value-1 phrases, distinct phrases distinct nodes; an effect's node must have exactly the causes'
    nodes as its graph parents."""
    atoms = [(_atoms(c), c) for c in cls]
    for reading in itertools.product(*[list(clause_readings(c)) for c in cls]):
        causes = [c for _, cs, _ in reading for c in cs]
        if any(base(c)[1] for c in causes):
            continue                                 # CLadder never negates a cause; do not guess what it means
        if any(_glued(base(p)[0], graph, names, [a for j, a in enumerate(atoms) if j != i])
               for i, (_, cs, es) in enumerate(reading) for p in (*cs, *es)):
            continue
        cause_bases = list(dict.fromkeys(causes))
        for perm in itertools.permutations(graph.nodes, len(cause_bases)):
            ref = dict(zip(cause_bases, perm))
            effects = [(op, tuple(ref[c] for c in cs), e) for op, cs, es in reading for e in es]
            yield from _place(graph, effects, ref, {}, {n: b for b, n in ref.items()})


def _place(graph, effects, ref, mech, refs):
    if not effects:
        yield dict(mech), dict(refs)
        return
    (op, parents, phrase), rest = effects[0], effects[1:]
    b, neg = base(phrase)
    cands = [ref[b]] if b in ref else list(graph.nodes)
    for n in cands:
        if n in mech or set(graph.parents(n)) != set(parents) or len(set(parents)) != len(parents):
            continue
        r = refs.get(n, b)                           # a node only ever named as an effect: its own reference
        if r != b and not other_wording(b, r, refs.values()):
            continue
        mech[n] = (op, parents, neg if r == b else 1 - neg)   # another wording of the node: its other value
        new_ref = n not in refs
        refs[n] = r
        yield from _place(graph, rest, ref, mech, refs)
        del mech[n]
        if new_ref:
            del refs[n]


def other_wording(phrase: str, ref: str, refs) -> bool:
    """May `phrase` be the other value of the variable whose cause phrase is `ref` ("penguin saddness" for
    "penguin happiness", "vaccine refusal" for "getting the vaccine")? It must share a word with `ref`, not read
    as the same value, and not be a list of other variables' phrases ("rain and sprinkler on")."""
    if flips(phrase, ref) == 0 or not any(same_word(a, b) for a in content(phrase) for b in content(ref)):
        return False
    # "manager not signing ... and director signing ...": a list holding a cause phrase, not one variable's value
    return not any(r in phrase and re.search(r"\b(and|or)\b", phrase.replace(r, " ")) for r in refs)


def evaluate(graph, mech, fixed: dict) -> dict:
    """Every node's state in topological order: fixed ones as given, the rest from their mechanisms."""
    vals = dict(fixed)
    for n in graph.topological_order():
        if n in vals:
            continue
        if n not in mech:
            raise KeyError(n)
        op, causes, neg = mech[n]
        bits = [vals[c] for c in causes]
        v = all(bits) if op == "and" else any(bits)
        vals[n] = int(v) ^ neg
    return vals


def solve_deterministic(parsed, q):
    """"Would S if A' instead of A?" -> (answer, 1.0/0.0 for S, derivation). Every reading of the "causes"
    sentences that fits the graph is evaluated; differing answers are settled by how well each reading's phrases
    fit the names of the nodes it puts them on (as in `cladder_search`), else the solver abstains."""
    g = parsed.graph
    cls = clauses(parsed.rules)
    if not cls:
        raise Abstain("cannot parse: no 'We know that ... causes ...' sentence")
    if len(g.nodes) > MAX_NODES or len(cls) > MAX_NODES or any(c.count(" and ") + c.count(" or ") > 8 for c in cls):
        raise Abstain(f"cannot parse: more than {MAX_NODES} variables or mechanisms, or too long a list of causes")
    found, errors = [], []
    splits = list(_compositions(parsed.evidence.split(" and "), " and ")) if parsed.evidence else [[]]
    for mech, refs in models(g, cls, parsed.names):
        fit = sum(similarity(r, parsed.names[n]) for n, r in refs.items())   # phrases vs the names of their nodes
        for evidence in splits:
            try:
                found.append((fit, *_answer(parsed, q, mech, refs, evidence)))
            except Abstain as e:
                errors.append(str(e))
    if not found:
        raise Abstain(errors[0] if errors else "cannot parse: the 'causes' sentences do not fit the graph")
    if len({f[1] for f in found}) > 1:
        best = max(f[0] for f in found)
        top = {f[1] for f in found if f[0] >= best - 1e-9}
        rest = [f[0] for f in found if f[1] not in top]
        if len(top) > 1 or max(rest) > best - MARGIN:
            raise Abstain("the 'causes' sentences can be read as different mechanisms with different answers")
        found = [f for f in found if f[0] >= best - 1e-9]
    _, answer, why = max(found, key=lambda f: f[0])
    return answer, float(answer == "yes"), why


def _answer(parsed, q, mech, refs, evidence) -> tuple[str, str]:
    """One reading: the treatment and its new value from the question's two phrases, the outcome node and whether
    S says its reference phrase or the opposite, the observed sources; then evaluate (unknown sources enumerated)."""
    g, new, old = parsed.graph, q.parts["new"], q.parts["old"]
    hits = set()
    for n, r in refs.items():
        for phrase, val in ((new, 1), (old, 0)):
            b, neg = base(phrase)
            if b == r:
                hits.add((n, val ^ neg))
    if len(hits) != 1:
        raise Abstain(f"cannot tell which variable and value {new!r} / {old!r} name")
    (x, action), = hits
    y = _pick(parsed, q.parts["y"], [n for n in g.nodes if n != x], refs)
    rel = flips(q.parts["y"], refs[y])
    if rel is None:
        raise Abstain(f"cannot tell whether {q.parts['y']!r} is {refs[y]!r} or its opposite")
    fixed = {x: action}
    for clause in evidence:
        n = _pick(parsed, clause, [m for m in g.nodes if m != x and m not in fixed], refs)
        f = flips(clause, refs[n])
        if f is None:
            raise Abstain(f"cannot tell which value of {refs[n]!r} the observation {clause!r} is")
        fixed[n] = 1 - f
    unknown = [n for n in g.nodes if n not in fixed and n not in mech]
    results = set()
    for bits in itertools.product((0, 1), repeat=len(unknown)):
        try:
            vals = evaluate(g, mech, {**fixed, **dict(zip(unknown, bits))})
        except KeyError as e:
            raise Abstain(f"no mechanism given for {e.args[0]}") from e
        results.add(vals[y] ^ rel)
    if len(results) != 1:
        raise Abstain(f"the outcome depends on unobserved {unknown}")
    holds = results.pop()
    facts = ", ".join(f"{n}={v}" for n, v in fixed.items() if n != x)
    return ("yes" if holds else "no"), (f"do({x}={action}) with {facts or 'no evidence'}: {refs[y]!r} is "
                                        f"{bool(vals[y])}, so {q.parts['y']!r} is {bool(holds)}")


def _pick(parsed, phrase: str, candidates, refs) -> str:
    """The candidate node a sentence talks about: the better of its overlap with the node's reference phrase (both
    ways) and with the node's name, the other a tie-breaker; a unique best, which some sentence must describe."""
    def fit(n):
        r = refs.get(n, "")
        by_phrase, by_name = (similarity(phrase, r) + similarity(r, phrase)) / 2, similarity(phrase, parsed.names[n])
        return max(by_phrase, by_name) + 0.1 * min(by_phrase, by_name)

    scored = sorted(((fit(n), n) for n in candidates), reverse=True)
    if not scored or scored[0][0] == 0 or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        raise Abstain(f"cannot tell which variable {phrase!r} is about")
    if scored[0][1] not in refs:
        raise Abstain(f"{phrase!r} is about {scored[0][1]}, which no 'causes' sentence names")
    return scored[0][1]
