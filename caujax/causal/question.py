"""Who is treatment and outcome in a rewritten question, and which values are hypothetical or factual."""
from __future__ import annotations

import re

from caujax.causal import mentions as mx
from caujax.causal.wording import PROB_WORDS, Abstain

def question_roles(question: str, pair, inv: mx.Inventory):
    """(X, Y, question mentions, question words)."""
    qt = mx.tokenize(question)
    qm = [m for m in mx.find_mentions(qt, inv)]
    words = [t.text for t in qt]
    linked = [inv.link(mx.content_tokens(p)) for p in pair] if pair else [None, None]
    if None not in linked and linked[0] != linked[1]:
        X, Y = linked
    else:
        X, Y = _roles(qm, words)
    return X, Y, qm, words


def read_question(question: str, pair, inv: mx.Inventory, counterfactual: bool):
    """(X, Y, hypothetical x word, asked y word, CDE conditions [(var, word)], bound, factual x words,
    factual y words)."""
    X, Y, qm, words = question_roles(question, pair, inv)
    valued = [m for m in qm if m.value is not None]
    xvals = [m for m in valued if m.var == X]
    yvals = [m for m in valued if m.var == Y]
    if not xvals:
        raise Abstain("no value for the treatment in the question")
    marker = next((i for i, w in enumerate(words) if w in ("had", "instead", "were", "been", "would")), len(words))
    x, factual = _hypothetical(words, xvals, marker, counterfactual)
    if counterfactual and qtype_bound(words):
        # PN/PS: Y too has a factual value before the marker and a hypothetical one after it
        y_hyp, y_fact = _split_counterfactual(yvals, marker)
        y = y_hyp[-1] if y_hyp else None
        y_factual = y_fact
    else:
        y = yvals[-1].value if yvals else None
        y_factual = []
        if y is None:
            y = _trailing_value(words, qm, Y)
    if y is None and not y_factual:
        raise Abstain("no value for the outcome in the question")
    conds = [(m.var, m.value) for m in valued if m.var not in (X, Y)]
    bound = None
    both = (question + " " + " ".join(pair or ())).lower()
    lo = re.search(r"minimum|minimal|lower bound|lowest|lower limit|at least", both)
    hi = re.search(r"maximum|maximal|upper bound|highest|upper limit|at most", both)
    if lo and not hi:
        bound = "lower"
    elif hi and not lo:
        bound = "upper"
    return X, Y, x, y, conds, bound, factual, y_factual


_HELD = {"held", "fixed", "maintained", "kept", "constant", "conditioned", "holding"}
_SET_VERBS = ("setting", "set", "changing", "increasing", "reducing", "decreasing", "raising", "lowering",
              "switching", "shifting", "making", "altering", "forcing", "intervening", "moving")


def _set_verb_before(words, i) -> bool:
    j = i - 1
    while j >= 0 and words[j] in ("the", "their", "its", "his", "her", "a", "an", "on"):
        j -= 1
    return j >= 0 and words[j] in _SET_VERBS


_HYP_LINK = {"would", "had", "instead", "been", "become", "becomes", "set", "changed"}
_FACT_LINK = {"was", "is", "are", "were", "currently", "observed", "initially", "actually"}


def _is_hyp(m, marker: int) -> bool:
    """Counterfactual questions: a value linked by `would have been`/`had been` is hypothetical, one linked by
    `was`/`is currently` factual; otherwise the side of the first such marker word decides."""
    cls = _link_class(m)
    return cls if cls is not None else m.start > marker


def _link_class(m) -> bool | None:
    if _HYP_LINK & set(m.link):
        return True
    if _FACT_LINK & set(m.link):
        return False
    return None


def _split_counterfactual(ms, marker: int) -> tuple[list[str], list[str]]:
    """(hypothetical words, factual words) of one variable's valued mentions. A mention without a telling link
    word takes the class its differently-valued sibling does not have, else the side of the marker."""
    known = {m.value: _link_class(m) for m in ms if _link_class(m) is not None}
    hyp, fact = [], []
    for m in ms:
        cls = _link_class(m)
        if cls is None:
            others = {c for v, c in known.items() if v != m.value}
            cls = (not others.pop()) if len(others) == 1 else m.start > marker
        (hyp if cls else fact).append(m.value)
    return hyp, fact


def qtype_bound(words) -> bool:
    return any(w in ("minimum", "minimal", "maximum", "maximal", "bound", "lowest", "highest", "limit") for w in words)


def _roles(qm, words) -> tuple[int, int]:
    """Treatment and outcome without an instruction: the outcome sits next to the probability word, the
    treatment is the other variable given a value (set, changed, had been)."""
    kw = [i for i, w in enumerate(words) if w in PROB_WORDS or w.startswith("likel") or w.startswith("probab")]
    distinct = list(dict.fromkeys(m.var for m in qm))
    if len(distinct) < 2:
        raise Abstain("cannot tell the treatment and the outcome in the question")
    held = {m.var for m in qm if m.value is not None and _HELD & set(m.link)}
    valued = list(dict.fromkeys(m.var for m in qm if m.value is not None and m.var not in held))
    hyp = [m.var for m in qm if m.value is not None and m.var not in held
           and (_HYP_LINK & set(m.link) or _set_verb_before(words, m.start))]
    if len(distinct) == 2:
        a, b = distinct
        would = {m.var for m in qm if m.value is not None and "would" in m.link}
        if len(would) == 1:               # "... Y would have been low had X been low"
            y = would.pop()
            return (b if y == a else a), y
        for cand in (hyp, valued):
            owners = set(cand)
            if len(owners) == 1:
                x = owners.pop()
                return x, (b if x == a else a)
        if kw:
            near = min(qm, key=lambda m: min(abs(m.start - k) for k in kw)).var
            return (b if near == a else a), near
        raise Abstain("cannot tell which variable is the treatment")
    if not kw:
        raise Abstain("cannot tell the outcome in the question")
    y = min(qm, key=lambda m: min(abs(m.start - k) for k in kw)).var
    main = next((i for i, w in enumerate(words) if w in ("would", "does", "will", "could", "do")), 0)
    late = [m.var for m in qm if m.start > main and m.value is not None and m.var != y
            and (_HYP_LINK & set(m.link) or _set_verb_before(words, m.start))]
    if len(set(late)) == 1:            # "Given that M is set to high, would setting X to low ..."
        return late[0], y
    xs = [v for v in dict.fromkeys(hyp) if v != y] or [v for v in valued if v != y]
    if len(set(xs)) != 1:
        raise Abstain("cannot tell which variable is the treatment")
    return xs[0], y


def bound_word(text: str) -> str | None:
    t = text.lower()
    lo = re.search(r"minimum|minimal|lower bound|lowest|lower limit", t)
    hi = re.search(r"maximum|maximal|upper bound|highest|upper limit", t)
    return "lower" if lo and not hi else "upper" if hi and not lo else None


def _hypothetical(words, xvals, marker: int, counterfactual: bool) -> tuple[str | None, list[str]]:
    """(hypothetical value word or None, factual value words). ETT/PN/PS state the factual value first and the
    hypothetical one after `had ... been` / `instead`; a lone value before that marker is the factual one."""
    vals = [m.value for m in xvals]
    if counterfactual:
        hyp, fact = _split_counterfactual(xvals, marker)
        return (hyp[-1] if hyp else None), fact
    if len(set(vals)) == 1:
        return vals[0], []
    for m in xvals:                                   # "from poor to excellent"
        if m.start > 0 and words[m.start - 1] == "from":
            rest = [n.value for n in xvals if n.start > m.start]
            if rest:
                return rest[0], []
    for i, m in enumerate(xvals[:-1]):                # "low versus high", "low compared to high"
        nxt = xvals[i + 1]
        gap = " ".join(words[m.end:nxt.start])
        if re.search(r"versus|vs|compared|rather than|instead of", gap):
            return m.value, []
    raise Abstain(f"two treatment values {vals} and no cue which is the intervention")


def _trailing_value(words, qm, Y):
    """`would their Y have a higher probability of being low` / `Y be more probable to be low`: the value after
    `being`/`be`; failing that `would their Y have probably been lower` (the rewriter's comparative)."""
    for m in qm:
        if m.var == Y:
            tail = words[m.end:m.end + 10]
            for i in range(len(tail) - 1):
                if tail[i] in ("being", "be", "become", "becoming") and mx.is_value_word(tail[i + 1]):
                    return tail[i + 1]
            for i in range(len(tail) - 1):
                if tail[i] in ("been", "be") and tail[i + 1] in _COMPARATIVE:
                    return _COMPARATIVE[tail[i + 1]]
    return None


_COMPARATIVE = {"lower": "low", "higher": "high", "worse": "bad", "better": "good", "smaller": "small",
                "larger": "large", "greater": "high"}


