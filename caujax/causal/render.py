"""Text for a problem instance: question and fact sentences, and the step-by-step `Reason` in CauGym's exact format."""
from __future__ import annotations

import re

from caujax.causal.scm import LETTERS, CausalGraph
from caujax.causal.tasks import Query, Solution, Term, round4, value_assignments

INSTRUCTION = {
    "ATE": "average treatment effect (ATE)", "CDE": "controlled direct effect (CDE)",
    "ETT": "effect of treatment on the treated (ETT)", "NDE": "natural direct effect (NDE)",
    "NIE": "natural indirect effect (NIE)", "PN": "probability of necessity (PN)",
    "PS": "probability of sufficiency (PS)",
}
INTRO = ("Imagine a self-contained, hypothetical world with only the following conditions, and without any "
         "unmentioned factors or causal relationships:")
FORMAT_EFFECT = ('Provide the calculation result to four decimal places and a final "yes" or "no" answer in JSON '
                 'format, like {"ANSWER": "Yes", "PROB": "0.1234"}:')
FORMAT_BOUND = 'Provide the calculation result to four decimal places in JSON format, like {"PROB": "0.1234"}:'


def f4(v: float) -> str:
    return f"{round4(v):.4f}"


# ----------------------------------------------------------------------------------------------- problem text
def _list(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _being(assign, names, labels: bool, letter=None) -> str:
    """`x being low (A=0), z being high (C=1)` for the fact sentences; names[node] = (name, (value0, value1))."""
    out = []
    for node, v in assign:
        name, vals = names[node]
        lab = f" ({letter[node]}={v})" if labels else ""
        out.append(f"{name} being {vals[v]}{lab}")
    return _list(out)


def fact_sentence(term: Term, value: float, names, labels: bool, letter=None) -> str:
    target = _being(term.target, names, labels, letter)
    if term.given:
        given = _being(term.given, names, labels, letter)
        return f"For those with {given}, the probability of {target} is {f4(value)}."
    return f"The probability of {target} is {f4(value)}."


def question_text(q: Query, names) -> str:
    """The CaLM question for q (names[node] = (name, (value0, value1)))."""
    X, xs = names[q.treatment]
    Y, ys = names[q.outcome]
    xv, xf, yv, yf = xs[q.x], xs[1 - q.x], ys[q.y], ys[1 - q.y]
    if q.type == "ATE":
        return f"If {X} is changed to be {xv}, will {Y} be more likely to be {yv}?"
    if q.type == "CDE":
        cond = _list([f"{names[n][0]} being {names[n][1][v]}" for n, v in q.given])
        return f"Conditioned on {cond}, if the {X} had been {xv}, would the {Y} have been more likely to be {yv}?"
    if q.type == "ETT":
        return (f"For those with {X} being {xf}, if their {X} had been {xv}, would the {Y} have been more likely to "
                f"be {yv}?")
    if q.type == "NDE":
        return (f"Suppose the mediator keeps constant when {X} is changed to be {xv}, would the {Y} have been more "
                f"likely to be {yv}?")
    if q.type == "NIE":
        return (f"Suppose {X} is held constant and the mediator changes to whatever value it would have attained "
                f"under {X} changing to be {xv}, would {Y} have been more likely to be {yv}?")
    link = "of the" if q.type == "PN" else "that"
    return (f"Given that {X} was {xf} and {Y} was {yf}, what is the {q.bound} bound of the probability {link} {Y} "
            f"would have been {yv} if the {X} had been {xv}?")


def problem_text(graph: CausalGraph, q: Query, facts: list[tuple[Term, float]], names, *, labels: bool = True,
                 instruction: bool = True) -> str:
    """A full problem. labels=True: the newer generator's layout (no spaces after sentences, `(A=0)` labels);
    False: CaLM's `basic` layout."""
    letter = {n: graph.letter(n) for n in graph.nodes}
    sep = "" if labels else " "
    edges = sep.join(f"{_cap(names[a][0])} has a direct effect on {names[b][0]}." for a, b in graph.edges)
    data = " ".join(fact_sentence(t, v, names, labels, letter) for t, v in facts)
    lines = [f"Input Info: {INTRO}{sep}{edges}", data + (" " if data else "")]
    if instruction:
        lines.append(f"Instruction: Consider the {INSTRUCTION[q.type]} of {names[q.treatment][0]} on "
                     f"{names[q.outcome][0]}.")
    lines.append(f"Question: {question_text(q, names)}")
    lines.append(FORMAT_BOUND if q.type in ("PN", "PS") else FORMAT_EFFECT)
    return "\n".join(lines)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# ----------------------------------------------------------------------------------------------- the Reason
def term_text(term: Term, L) -> str:
    t = ",".join(f"{L[n]}={v}" for n, v in term.target)
    g = ",".join(f"{L[n]}={v}" for n, v in term.given)
    return f"P({t}|{g})" if g else f"P({t})"


def _p(target, given, L) -> str:
    return term_text(Term(tuple(target), tuple(given)), L)


def _sym(nodes, L) -> str:
    """Symbolic (unvalued) node list as the Reason writes it in sum_{..} and P(..): `A` or `A,C`."""
    return ",".join(L[n] for n in nodes)


def _set(nodes, L) -> str:
    return "{" + ",".join(L[n] for n in nodes) + "}" if nodes else "empty set"


def reason_steps(sol: Solution, graph: CausalGraph, L: dict) -> dict[str, str]:
    """CauGym's Reason dict for a solved query (DATA.md 1.6); L maps node -> letter."""
    q = sol.query
    X, Y = L[q.treatment], L[q.outcome]
    if q.type in ("PN", "PS"):
        return _reason_bound(sol, L)
    if q.type in ("ATE", "ETT"):
        head = f"Check whether treatment ({X}) is a cause of outcome ({Y}). "
        if not sol.cause:
            return {"Step 1": head + f"Node {X} is not a cause of node {Y} because there is no directed path from "
                                     f"{X} to {Y}. So the answer is No."}
        path = "->".join(L[n] for n in graph.directed_paths(q.treatment, q.outcome)[0])
        s1 = head + (f"Node {X} is a cause of node {Y} because there is one or more directed paths from {X} to {Y} "
                     f"(e.g. {path}).")
        s2 = f"Identification of the Causal Effect. P({Y}|do({X})) can be identified."
    elif q.type in ("CDE", "NDE"):
        head = f"Check whether there is an edge from treatment ({X}) to outcome ({Y}). "
        if not sol.cause:
            tail = " So the answer is No." if q.type == "NDE" else ""
            return {"Step 1": head + f"The edge {X}->{Y} does not exist." + tail}
        s1 = head + f"The edge {X}->{Y} exists."
        if q.type == "CDE":
            do = ",".join([X] + [L[n] for n, _ in q.given])
            s2 = f"Identification of the Causal Effect. P({Y}|do({do})) can be identified."
        else:
            s2 = f"Find a valid mediator set: {_set(sol.mediators, L)}."
    else:                                                                      # NIE
        head = f"Check whether there is an indirect connect between treatment ({X}) and outcome ({Y}). "
        if not sol.cause:
            return {"Step 1": head + f"There is no directed path with three or more vertices from {X} to {Y}. "
                                     f"So the answer is No."}
        path = next(p for p in graph.directed_paths(q.treatment, q.outcome) if len(p) >= 3)
        eg = "->".join(L[n] for n in path)
        s1 = head + f"There exists directed path(s) with three or more vertices from {X} to {Y} (e.g. {eg})"
        s2 = f"Find a valid mediator set: {_set(sol.mediators, L)}."
    s3 = f"Find a valid backdoor adjustment set: {_set(sol.adjustment, L)}."
    s4, s6 = _formula(sol, L)
    s5 = "\t".join(f"{term_text(t, L)}={f4(v)}" for t, v in sol.terms)
    return {"Step 1": s1, "Step 2": s2, "Step 3": s3, "Step 4": s4, "Step 5": s5, "Step 6": s6,
            "Step 7": step7(q.type, sol.value)}


_CHECK_HEAD = re.compile(r"^Check whether [^.]*\. ")


def short_reason(reason: dict[str, str]) -> dict[str, str]:
    """A CauGym Reason cut to what the answer needs, for small models and short budgets: the cause check without
    its "Check whether ..." preamble, the mediator and adjustment sets only when not empty, the formula (Step 4),
    the numbers (Step 6) and the verdict (Step 7); the "can be identified" boilerplate and the Step 5 list of values
    (repeated in Step 6) are left out. Steps are renumbered; PN/PS Reasons (two steps) are kept whole."""
    steps = list(reason.values())
    if len(steps) == 2:
        return dict(reason)
    kept = [_CHECK_HEAD.sub("", steps[0])]
    if len(steps) == 7:
        kept += [s for s in steps[1:3] if not s.startswith("Identification") and not s.endswith("empty set.")]
        kept += [steps[3], steps[5], steps[6]]
    return {f"Step {i}": s for i, s in enumerate(kept, 1)}


def step7(qtype: str, value: float) -> str:
    r = f4(value)
    if abs(value) < 0.001:
        return f"{qtype}={r}~=0 so the answer is No."
    rel = ">0" if value > 0 else "<0"
    yes = (value < 0) if qtype == "ETT" else (value > 0)
    return f"{qtype}={r}{rel} so the answer is {'Yes' if yes else 'No'}."


def _formula(sol: Solution, L) -> tuple[str, str]:
    """(Step 4, Step 6) for the effect types, in the loop order tasks.evaluate uses."""
    q = sol.query
    val = {t.key: v for t, v in sol.terms}
    Xn, Yn, x, y = q.treatment, q.outcome, q.x, q.y
    xo, yv = 1 - x, ((Yn, y),)
    X, Y = L[Xn], L[Yn]
    Z, M = list(sol.adjustment), list(sol.mediators)
    zs, ms = _sym(Z, L), _sym(M, L)
    zvals, mvals = value_assignments(Z), value_assignments(M)
    r = f4(sol.value)

    def P(target, given=()):
        return _p(target, given, L)

    def V(target, given=()):
        return f4(val[Term(tuple(target), tuple(given)).key])

    if q.type == "ATE":
        head = f"ATE=P({Y}={y}|do({X}={x}))-P({Y}={y}|do({X}={xo}))="
        if not Z:
            return (head + f"{P(yv, ((Xn, x),))}-{P(yv, ((Xn, xo),))}",
                    f"ATE={V(yv, ((Xn, x),))}-{V(yv, ((Xn, xo),))}={r}")
        s4 = head + (f"sum_{{{zs}}} [P({Y}={y}|{X}={x},{zs})*P({zs})-P({Y}={y}|{X}={xo},{zs})*P({zs})]="
                     + "+".join(f"[{P(yv, ((Xn, x), *z))}*{P(z)}-{P(yv, ((Xn, xo), *z))}*{P(z)}]" for z in zvals))
        s6 = "ATE=" + "+".join(f"[{V(yv, ((Xn, x), *z))}*{V(z)}-{V(yv, ((Xn, xo), *z))}*{V(z)}]"
                               for z in zvals) + f"={r}"
        return s4, s6
    if q.type == "CDE":
        g = tuple(q.given)
        gs = ",".join(f"{L[n]}={v}" for n, v in g)
        head = f"CDE=P({Y}={y}|do({X}={x},{gs}))-P({Y}={y}|do({X}={xo},{gs}))="
        if not Z:
            return (head + f"{P(yv, ((Xn, x), *g))}-{P(yv, ((Xn, xo), *g))}",
                    f"CDE={V(yv, ((Xn, x), *g))}-{V(yv, ((Xn, xo), *g))}={r}")
        s4 = head + (f"sum_{{{zs}}} [P({Y}={y}|{X}={x},{gs},{zs})-P({Y}={y}|{X}={xo},{gs},{zs})]*P({zs})="
                     + "+".join(f"[{P(yv, ((Xn, x), *g, *z))}-{P(yv, ((Xn, xo), *g, *z))}]*{P(z)}" for z in zvals))
        s6 = "CDE=" + "+".join(f"[{V(yv, ((Xn, x), *g, *z))}-{V(yv, ((Xn, xo), *g, *z))}]*{V(z)}"
                               for z in zvals) + f"={r}"
        return s4, s6
    if q.type == "ETT":
        head = f"ETT=E[{Y}_{{{X}={xo}}}-{Y}_{{{X}={x}}}|{X}={xo}]={P(yv, ((Xn, xo),))}-"
        if not Z:
            return head + P(yv, ((Xn, x),)), f"ETT={V(yv, ((Xn, xo),))}-{V(yv, ((Xn, x),))}={r}"
        s4 = head + (f"sum_{{{zs}}} P({Y}={y}|{X}={x},{zs})*P({zs}|{X}={xo})={P(yv, ((Xn, xo),))}-["
                     + "+".join(f"{P(yv, ((Xn, x), *z))}*{P(z, ((Xn, xo),))}" for z in zvals) + "]")
        s6 = (f"ETT={V(yv, ((Xn, xo),))}-["
              + "+".join(f"{V(yv, ((Xn, x), *z))}*{V(z, ((Xn, xo),))}" for z in zvals) + f"]={r}")
        return s4, s6
    if q.type == "NDE":
        if not Z and not M:
            return (f"NDE={P(yv, ((Xn, x),))}-{P(yv, ((Xn, xo),))}",
                    f"NDE={V(yv, ((Xn, x),))}-{V(yv, ((Xn, xo),))}={r}")
        if not M:
            s4 = (f"NDE=sum_{{{zs}}} [P({Y}={y}|{X}={x},{zs})-P({Y}={y}|{X}={xo},{zs})]*P({zs})="
                  + "+".join(f"[{P(yv, ((Xn, x), *z))}-{P(yv, ((Xn, xo), *z))}]*{P(z)}" for z in zvals))
            s6 = "NDE=" + "+".join(f"[{V(yv, ((Xn, x), *z))}-{V(yv, ((Xn, xo), *z))}]*{V(z)}"
                                   for z in zvals) + f"={r}"
            return s4, s6
        if not Z:
            s4 = (f"NDE=sum_{{{ms}}} [P({Y}={y}|{X}={x},{ms})-P({Y}={y}|{X}={xo},{ms})]*P({ms}|{X}={xo})="
                  + "+".join(f"[{P(yv, ((Xn, x), *m))}-{P(yv, ((Xn, xo), *m))}]*{P(m, ((Xn, xo),))}"
                             for m in mvals))
            # CauGym quirk: this one variant's Step 6 has no "NDE" prefix
            s6 = "=" + "+".join(f"({V(yv, ((Xn, x), *m))}-{V(yv, ((Xn, xo), *m))})*{V(m, ((Xn, xo),))}"
                                for m in mvals) + f"={r}"
            return s4, s6
        s4 = (f"NDE=sum_{{{ms}}}sum_{{{zs}}} [P({Y}={y}|{X}={x},{ms},{zs})-P({Y}={y}|{X}={xo},{ms},{zs})]"
              f"*P({ms}|{X}={xo},{zs})*P({zs})="
              + "+".join(f"[{P(yv, ((Xn, x), *m, *z))} - {P(yv, ((Xn, xo), *m, *z))}]*{P(m, ((Xn, xo), *z))}*{P(z)}"
                         for z in zvals for m in mvals))
        s6 = "NDE=" + "+".join(f"({V(yv, ((Xn, x), *m, *z))}-{V(yv, ((Xn, xo), *m, *z))})*{V(m, ((Xn, xo), *z))}"
                               f"*{V(z)}" for z in zvals for m in mvals) + f"={r}"
        return s4, s6
    # NIE
    if not Z:
        s4 = (f"NIE=sum_{{{ms}}} P({Y}={y}|{X}={xo},{ms})*[P({ms}|{X}={x})-P({ms}|{X}={xo})]="
              + "+".join(f"{P(yv, ((Xn, xo), *m))}*[{P(m, ((Xn, x),))}-{P(m, ((Xn, xo),))}]" for m in mvals))
        s6 = "NIE=" + "+".join(f"{V(yv, ((Xn, xo), *m))}*({V(m, ((Xn, x),))}-{V(m, ((Xn, xo),))})"
                               for m in mvals) + f"={r}"
        return s4, s6
    s4 = (f"NIE=sum_{{{ms}}}sum_{{{zs}}} P({Y}={y}|{X}={xo},{ms},{zs})*[P({ms}|{X}={x},{zs})-P({ms}|{X}={xo},{zs})]"
          f"*P({zs})="
          + "+".join(f"{P(yv, ((Xn, xo), *m, *z))}*[{P(m, ((Xn, x), *z))}-{P(m, ((Xn, xo), *z))}]*{P(z)}"
                     for z in zvals for m in mvals))
    s6 = "NIE=" + "+".join(f"{V(yv, ((Xn, xo), *m, *z))}*[{V(m, ((Xn, x), *z))}-{V(m, ((Xn, xo), *z))}]*{V(z)}"
                           for z in zvals for m in mvals) + f"={r}"
    return s4, s6


def _reason_bound(sol: Solution, L) -> dict[str, str]:
    q = sol.query
    val = {t.key: v for t, v in sol.terms}
    Xn, Yn, x, y = q.treatment, q.outcome, q.x, q.y
    X, Y = L[Xn], L[Yn]
    Z = list(sol.adjustment)
    yd = y if q.bound == "upper" else 1 - y
    do = f"P({Y}={yd}|do({X}={x}))"
    cond = (((Yn, yd),), ((Xn, x),))
    if not Z:
        s1 = f"Calculate {do}\n{do}={_p(*cond, L)}={f4(sol.do_value)}"
    else:
        zs = _sym(Z, L)
        parts = [(Term(((Yn, yd),), ((Xn, x), *z)), Term(z)) for z in value_assignments(Z)]
        s1 = (f"Calculate {do}\n{do}=sum_{{{zs}}} P({Y}={yd}|{X}={x},{zs})*P({zs})="
              + "+".join(f"{term_text(a, L)}*{term_text(b, L)}" for a, b in parts) + "\n"
              + "\t".join(f"{term_text(t, L)}={f4(val[t.key])}" for a, b in parts for t in (a, b)) + "\n"
              + f"{do}=" + "+".join(f"{f4(val[a.key])}*{f4(val[b.key])}" for a, b in parts) + f"={f4(sol.do_value)}")
    den_t = Term(((Xn, 1 - x), (Yn, 1 - y)))
    den = val[den_t.key]
    if q.bound == "upper":
        first = Term(((Xn, x), (Yn, y)))
        ratio = (sol.do_value - val[first.key]) / den
        s2 = (f"Upper bound of {q.type}: min{{1, [P({Y}={y})|do({X}={x})-{term_text(first, L)}]/{term_text(den_t, L)}}}"
              f"\n=min{{1, ({f4(sol.do_value)}-{f4(val[first.key])})/{f4(den)}}}\n=min{{1, {f4(ratio)}}}"
              f"\n={f4(sol.value)}")
    else:
        first = Term(((Yn, 1 - y),))
        ratio = (val[first.key] - sol.do_value) / den
        s2 = (f"Lower bound of {q.type}: max{{0, [{term_text(first, L)}-{do}]/{term_text(den_t, L)}}}"
              f"\n=max{{0, ({f4(val[first.key])}-{f4(sol.do_value)})/{f4(den)}}}\n=max{{0, {f4(ratio)}}}"
              f"\n={f4(sol.value)}")
    return {"Step 1": s1, "Step 2": s2}


def reason_text(reason: dict) -> str:
    """DATA.md's rendering recipe: `Step k: ...` lines, empty steps skipped."""
    return "\n".join(f"{k}: {v}" for k, v in reason.items() if v)


# ----------------------------------------------------------------------------------------------- letters
_VALUED = re.compile(r"P\(([A-Z]=\d(?:,[A-Z]=\d)*)(?:\|([A-Z]=\d(?:,[A-Z]=\d)*))?\)=(-?\d+\.\d+)")


def _pairs(s: str):
    return [(a, int(b)) for a, b in (p.split("=") for p in s.split(","))] if s else []


def align_reason(sol: Solution, graph: CausalGraph, reason: dict, known: dict | None = None):
    """Node -> letter and the set of nodes whose 0/1 codes are flipped, read off an existing Reason.

    The CaLM wording names no letters and no codes, so the parser numbers values by first appearance; the
    Reason's valued terms (same order as sol.terms) and its example path pin both down. Nodes the Reason never
    names get the unused letters in topological order.
    """
    letters, flips = dict(known or {}), set()
    text = "\n".join(str(v) for v in reason.values() if v)
    shown = [(_pairs(t), _pairs(g), float(v)) for t, g, v in _VALUED.findall(text)]
    ours = [t for t, _ in sol.terms]
    for (rt, rg, _), term in zip(shown, ours):          # same order; PN/PS show only their Step 1 terms valued
        if (len(rt), len(rg)) != (len(term.target), len(term.given)):
            break
        for (node, code), (let, rcode) in zip((*term.target, *term.given), (*rt, *rg)):
            letters.setdefault(node, let)
            if rcode != code:
                flips.add(node)
    q = sol.query
    m = re.search(r"treatment \(([A-Z])\) .*outcome \(([A-Z])\)", text)
    if m:
        letters.setdefault(q.treatment, m.group(1))
        letters.setdefault(q.outcome, m.group(2))
    m = re.search(r"e\.g\. ([A-Z](?:->[A-Z])+)", text)
    if m:
        shown_path = m.group(1).split("->")
        fits = [p for p in graph.directed_paths(q.treatment, q.outcome) if len(p) == len(shown_path)
                and all(letters.get(n, let) == let for n, let in zip(p, shown_path))]
        if len(fits) == 1:
            for n, let in zip(fits[0], shown_path):
                letters.setdefault(n, let)
    free = [c for c in LETTERS if c not in set(letters.values())]
    for n in graph.topological_order():
        if n not in letters:
            letters[n] = free.pop(0)
    return letters, flips
