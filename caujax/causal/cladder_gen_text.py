"""Sentences of CLadder-style problems: the graph, the given information, the question and the reasoning's header.

Sentence frames follow the CLadder v1.5 release (Jin et al., NeurIPS 2023), so a reader of CLadder's text reads
ours; the words inside them come from our own stories (caujax.causal.cladder_gen_stories).
"""
from __future__ import annotations

from caujax.causal.cladder_gen_estimands import MEDIATORS, Template, Term
from caujax.causal.cladder_gen_stories import Story

PREAMBLE = ("Imagine a self-contained, hypothetical world with only the following conditions, and without any "
            "unmentioned factors or causal relationships:")


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _and(items) -> str:
    return " and ".join(items)


def graph_sentences(story: Story, tpl: Template, hidden: bool = True) -> list[str]:
    """"A has a direct effect on B and C." per cause, then "A is unobserved." for the hidden confounder (left out
    when the problem gives numbers about it, as the corrected arrowhead mediation estimands do)."""
    out = [cap(f"{story.var(a).name} has a direct effect on {_and(story.var(b).name for b in bs)}.")
           for a, bs in tpl.said]
    if hidden and tpl.hidden:
        out.append(cap(f"{story.var(tpl.hidden).name} is unobserved."))
    return out


def given_sentence(story: Story, term: Term, percent: int) -> str:
    if term.kind == "joint":
        x = term.conds[0][1]
        return f"The probability of {story.np('X', x)} and {story.np('Y', 1)} is {percent}%."
    if not term.conds:
        return f"The overall probability of {story.np(term.target, 1)} is {percent}%."
    return f"For {story.who(term.conds)}, the probability of {story.np(term.target, 1)} is {percent}%."


def question(query_type: str, graph: str, story: Story, positive: bool) -> str:
    """The question of a probabilistic query; `positive` picks the wording whose "yes" means the quantity is above
    its threshold (for ETT: X = 1 raises Y, i.e. Y would be less likely without X)."""
    x1, y1, y0 = story.np("X", 1), story.np("Y", 1), story.np("Y", 0)
    if query_type == "marginal":
        return f"Is {y1} {'more' if positive else 'less'} likely than {y0} overall?"
    if query_type == "correlation":
        return f"Is the chance of {y1} {'larger' if positive else 'smaller'} when observing {x1}?"
    if query_type == "exp_away":
        return (f"If we look at {story.who((('V3', 1),))}, does the chance of {y1} "
                f"{'increase' if positive else 'decrease'} when {x1}?")
    if query_type == "ate":
        return f"Will {x1} {'increase' if positive else 'decrease'} the chance of {y1}?"
    if query_type == "ett":
        return (f"For {story.who((('X', 1),))}, would it be {'less' if positive else 'more'} likely to see {y1} "
                f"if {story.otherwise('X', 0)}?")
    way = "positively" if positive else "negatively"
    xn, yn = story.var("X").name, story.var("Y").name
    through = _and(story.var(m).name for m in MEDIATORS[graph])
    if query_type == "nie":
        return cap(f"Does {xn} {way} affect {yn} through {through}?")
    if query_type == "nde":
        return f"If we disregard the mediation effect through {through}, would {xn} {way} affect {yn}?"
    raise ValueError(f"no probabilistic question for {query_type!r}")


def backadj_sentences(story: Story, z: str, z_first: bool) -> tuple[str, str]:
    """Method 1 / Method 2 (one adjusts for z, the other for nothing) and the question, as CLadder words them."""
    xn, yn, zn = story.var("X").name, story.var("Y").name, story.var(z).name
    plain = f"We look directly at how {xn} correlates with {yn} in general."
    if z_first:
        given = f"Method 1: We look at how {xn} correlates with {yn} case by case according to {zn}. Method 2: {plain}"
    else:
        given = f"Method 1: {plain} Method 2: We look at this correlation case by case according to {zn}."
    return given, f"To understand how {xn} affects {yn}, is it more correct to use the Method 1 than Method 2?"


def collider_sentences(story: Story, corr: float, says_no_effect: bool) -> tuple[str, str]:
    who, x1, y1 = story.who((("V3", 1),)), story.np("X", 1), story.np("Y", 1)
    given = f"For {who}, the correlation between {x1} and {y1} is {corr:.2f}."
    verb = "does not affect" if says_no_effect else "affects"
    return given, f"If we look at {who}, does it mean that {x1} {verb} {y1}?"


def det_sentences(story: Story, tpl: Template, funcs: dict, evidence: dict, x: int, y: int) -> tuple[str, str]:
    """The mechanisms ("We know that a or b causes c."), the evidence and the question of a deterministic
    counterfactual. funcs[node] = (op, negate): op "and"/"or" over the parents, negate for one-parent nodes."""
    clauses, i = [], 0
    while i < len(tpl.det):
        node, parents = tpl.det[i]
        group = [node]
        # CLadder joins one cause's several one-parent effects: "rixq causes zuph and not swoy"
        while len(parents) == 1 and i + 1 < len(tpl.det) and tpl.det[i + 1][1] == parents:
            i += 1
            group.append(tpl.det[i][0])
        op = funcs[node][0]
        cause = f" {op} ".join(story.np(q, 1) for q in parents)
        effects = _and(story.np(n, 0 if funcs[n][1] else 1) for n in group)
        clauses.append(f"{cause} causes {effects}")
        i += 1
    if [ps for _, ps in tpl.det] == [("X",), ("V2",)]:     # the chain: CLadder reads it as one sentence
        text = "We know that " + ", and we know that ".join(clauses) + "."
    else:
        text = "We know that " + ". ".join(cap(c) if k else c for k, c in enumerate(clauses)) + "."
    if evidence:
        text += " We observed " + _and(story.observed(r, v) for r, v in evidence.items()) + "."
    q = f"{story.would('Y', y)} if {story.np('X', x)} instead of {story.np('X', 1 - x)}?"
    return text, q


def mapping_line(story: Story, tpl: Template) -> str:
    return "Let " + "; ".join(f"{n} = {story.var(n).name}" for n in tpl.order) + "."


def edges_line(tpl: Template) -> str:
    return ",".join(f"{a}->{b}" for a, b in tpl.edges)


def _open_backdoor_path(g, adjust) -> str | None:
    """A path X <- ... Y left open by `adjust` (a non-collider outside it, every collider in it or with a
    descendant in it), written "X<-V1->Y"; None when every backdoor path is blocked."""
    adjust = set(adjust)

    def walk(path):
        a = path[-1]
        for b in g.parents(a) + g.children(a):
            if b in path or (len(path) == 1 and b not in g.parents("X")):
                continue
            new = path + [b]
            if b == "Y":
                if _is_open(g, new, adjust):
                    return new
                continue
            found = walk(new)
            if found:
                return found
        return None
    path = walk(["X"])
    if path is None:
        return None
    return path[0] + "".join(("<-" if g.has_edge(b, a) else "->") + b for a, b in zip(path, path[1:]))


def _is_open(g, path, adjust) -> bool:
    for a, b, c in zip(path, path[1:], path[2:]):
        collider = g.has_edge(a, b) and g.has_edge(c, b)
        if collider and not ({b} | g.descendants(b)) & adjust:
            return False
        if not collider and b in adjust:
            return False
    return True


def backadj_lines(g, m1: list, m2: list, best: list) -> list[str]:
    """Reasoning lines 4-7 of a backdoor-adjustment item (the release leaves them "nan"): the criterion (Pearl 2009,
    def. 3.3.1), the two sets, why each is or is not valid, and which method is more correct."""
    def name(s):
        return s[0] if s else "nothing"

    def why(s):
        bad = [n for n in s if n in g.descendants("X")]
        if bad:
            return f"{name(s)} is a descendant of X, so adjusting for it is not allowed"
        path = _open_backdoor_path(g, s)
        if path:
            return f"adjusting for {name(s)} leaves the backdoor path {path} open"
        if not s:
            return "without adjustment no backdoor path is open"
        if s != best:
            return f"adjusting for {name(s)} is valid but not needed: no backdoor path is open without it"
        return f"adjusting for {name(s)} blocks every backdoor path"
    first = m1 == best
    return ["A valid adjustment set holds no descendant of X and blocks every path between X and Y that starts with "
            "an arrow into X",
            f"Method 1 adjusts for {name(m1)}; Method 2 adjusts for {name(m2)}",
            f"{why(m1)}; {why(m2)}",
            f"Method {1 if first else 2} is more correct: {'yes' if first else 'no'}"]
