"""Read a CLadder question (Jin et al., "CLadder: Assessing Causal Reasoning in Language Models", NeurIPS 2023) into
its parts: the causal graph, the given probabilities, and the question sentence.

The text is CLadder's generator wording: a preamble, the graph in words ("A has a direct effect on B and C.",
"A is unobserved."), the given information and the question, which is the last sentence. This module only splits
and reads sentences; which phrase names which variable is decided in `cladder_solve`, because that needs the
question. Anything outside the known sentence forms raises `CladderParseError` with the sentence it could not read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from caujax.causal.scm import CausalGraph

PREAMBLE = ("Imagine a self-contained, hypothetical world with only the following conditions, and without any "
            "unmentioned factors or causal relationships:")


class CladderParseError(ValueError):
    """The text is not in CLadder's wording; the message names the part that failed."""


@dataclass(frozen=True)
class Prior:
    """"The overall probability of T is p%.": P(T's variable = 1) = p, exact within +-half (rounding to the %)."""

    target: str
    p: float
    half: float


@dataclass(frozen=True)
class CondGroup:
    """2**k sentences "For C, the probability of T is p%." with C a k-part condition ("A", "A and B",
    "A, B, and C"). slots[j] = (phrase for value 0, phrase for value 1) of the j-th conditioning variable: CLadder
    lists the rows in binary order, first part most significant, so the phrase a slot shows first is value 0.
    probs[i] = P(T = 1 | the slots' values = bits of i)."""

    target: str
    slots: tuple[tuple[str, str], ...]
    probs: tuple[float, ...]
    half: float


@dataclass(frozen=True)
class JointPair:
    """"The probability of A0 and B is p0%. The probability of A1 and B is p1%.": P(A = a, B = 1) for a = 0, 1
    (CLadder's correlation data; the first sentence names value 0 of A, as the binary order above)."""

    first: tuple[str, str]
    second: str
    probs: tuple[float, float]
    half: float


@dataclass(frozen=True)
class Correlation:
    """"For C, the correlation between A and B is r." (collider bias)."""

    population: str
    pair: str
    r: float


@dataclass(frozen=True)
class ParsedText:
    """graph: nodes keyed by their lower-cased names; names: key -> name as written mid-sentence; unobserved: keys.
    given: Prior / CondGroup / JointPair / Correlation items in text order. methods: the two "Method 1/2" texts
    (backadj). rules: the deterministic "We know that ..." sentences; evidence: the "We observed ..." clause."""

    graph: CausalGraph
    names: dict
    unobserved: frozenset
    given: tuple
    question: str
    methods: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    evidence: str | None = None


_EDGE = re.compile(r"^(?P<parent>.+?) has a direct effect on (?P<children>.+)\.$")
_UNOBSERVED = re.compile(r"^(?P<name>.+) is unobserved\.$")
_PCT = r"(?P<p>\d+(?:\.\d+)?)%"
_PRIOR = re.compile(rf"^The overall probability of (?P<t>.+) is {_PCT}\.$")
_COND = re.compile(rf"^For (?P<c>.+?), the probability of (?P<t>.+) is {_PCT}\.$")
_JOINT = re.compile(rf"^The probability of (?P<t>.+) is {_PCT}\.$")
_CORR = re.compile(r"^For (?P<c>.+?), the correlation between (?P<pair>.+) is (?P<r>-?\d+(?:\.\d+)?)\.$")
_METHOD = re.compile(r"^Method (?P<k>[12]): (?P<m>.+)\.$")


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?])\s+", " ".join(text.split())) if s]


def split_list(text: str) -> list[str]:
    """"A", "A and B", "A, B, and C" -> their items (CLadder's verbalize_list)."""
    if ", and " in text:
        head, last = text.rsplit(", and ", 1)
        return [*head.split(", "), last]
    return text.split(" and ") if text.count(" and ") == 1 else [text]


def _key(name: str) -> str:
    return name.strip().lower()


def _percent(m: re.Match) -> tuple[float, float]:
    """A shown "37%" -> (0.37, 0.005): CLadder prints `{:.0%}` of the exact value, so it is within half a unit."""
    s = m.group("p")
    decimals = len(s.split(".")[1]) if "." in s else 0
    if float(s) > 100.0:
        raise CladderParseError(f"cannot parse: a probability of {s}%")
    return float(s) / 100.0, 0.5 * 10.0 ** -(decimals + 2)


def parse_graph(sentences: list[str]) -> tuple[CausalGraph, dict, frozenset, int]:
    """Graph sentences from the start of `sentences`; returns the graph, key -> name, unobserved keys and how many
    sentences were read."""
    names, edges, unobserved, i = {}, [], set(), 0

    def node(name: str, initial: bool) -> str:
        k = _key(name)
        if not initial:
            names[k] = name                # the mid-sentence spelling is the name as written
        elif k not in names:               # a sentence-initial capital says nothing (but keep "CEO")
            names[k] = name if name[1:2].isupper() else name[:1].lower() + name[1:]
        return k

    while i < len(sentences):
        s = sentences[i]
        m = _EDGE.match(s)
        if m:
            p = node(m.group("parent"), True)
            for c in split_list(m.group("children")):
                edges.append((p, node(c, False)))
            i += 1
            continue
        m = _UNOBSERVED.match(s)
        if m:
            unobserved.add(node(m.group("name"), True))
            i += 1
            continue
        break
    if not edges:
        raise CladderParseError("cannot parse: no causal graph sentence ('X has a direct effect on Y.')")
    if unobserved - set(names):
        raise CladderParseError(f"cannot parse: unobserved variable not in the graph: {sorted(unobserved)}")
    try:
        graph = CausalGraph.from_edges(edges, nodes=list(names))
    except ValueError as e:
        raise CladderParseError(f"cannot parse: bad graph: {e}") from e
    return graph, names, frozenset(unobserved), i


def split_condition(conds: list[str]) -> tuple[tuple[str, str], ...]:
    """Rows' condition texts in binary order -> ((phrase 0, phrase 1) per slot). Tries every way to cut the first
    and last rows at the list separators and keeps the cuts that rebuild every row; more or fewer than one: error."""
    n = len(conds)
    k = n.bit_length() - 1
    if n != 2 ** k or k < 1:
        raise CladderParseError(f"cannot parse: {n} conditional rows for one outcome (want 2, 4 or 8)")

    def join(parts):
        return parts[0] if len(parts) == 1 else (" and ".join(parts) if len(parts) == 2
                                                 else ", ".join(parts[:-1]) + ", and " + parts[-1])

    def cuts(text):
        if k == 1:
            return [[text]]
        out = []
        for m in re.finditer(" and " if k == 2 else ", ", text):
            a, rest = text[:m.start()], text[m.end():]
            if k == 2:
                out.append([a, rest])
            else:
                out.extend([a, *c] for c in _cuts_tail(rest, k - 1))
        return out

    found = set()
    for lo in cuts(conds[0]):
        for hi in cuts(conds[-1]):
            slots = tuple(zip(lo, hi))
            rows = [join([slots[j][(i >> (k - 1 - j)) & 1] for j in range(k)]) for i in range(n)]
            if rows == conds and all(a != b for a, b in slots):
                found.add(slots)
    if len(found) != 1:
        dup = [c for i, c in enumerate(conds) if c in conds[:i]]
        if dup:
            raise CladderParseError(f"cannot parse: two rows give the condition {dup[0]!r} different probabilities, "
                                    f"so the text does not say which value each row is for")
        raise CladderParseError(f"cannot parse: condition {conds[0]!r} splits {len(found)} ways over its rows")
    return found.pop()


def _cuts_tail(text: str, k: int) -> list[list[str]]:
    """Cut "B, and C" (k=2) or "B, C, and D" (k=3) the way `join` writes the tail of a 3+-part list."""
    if k == 2:
        return [[text[:m.start()], text[m.end():]] for m in re.finditer(", and ", text)]
    return [[text[:m.start()], *c] for m in re.finditer(", ", text) for c in _cuts_tail(text[m.end():], k - 1)]


def _group_conditionals(rows: list[tuple[str, str, float, float]]) -> CondGroup:
    target = rows[0][1]
    return CondGroup(target, split_condition([r[0] for r in rows]), tuple(r[2] for r in rows),
                     max(r[3] for r in rows))


def parse_given(sentences: list[str]) -> tuple[tuple, tuple[str, ...], tuple[str, ...], str | None]:
    """Given-information sentences -> (items, methods, rules, evidence)."""
    items, methods, rules, evidence = [], [], [], None
    pending: list = []                 # conditional rows with the same outcome phrase, grouped once complete
    joints: list = []

    def flush():
        if pending:
            items.append(_group_conditionals(pending))
            pending.clear()

    for s in sentences:
        m = _COND.match(s)
        if m and ", the probability of " not in m.group("t"):
            p, half = _percent(m)
            if pending and pending[0][1] != m.group("t"):
                flush()
            pending.append((m.group("c"), m.group("t"), p, half))
            continue
        flush()
        if (m := _PRIOR.match(s)):
            items.append(Prior(m.group("t"), *_percent(m)))
        elif (m := _CORR.match(s)):
            items.append(Correlation(m.group("c"), m.group("pair"), float(m.group("r"))))
        elif (m := _JOINT.match(s)):
            joints.append((m.group("t"), *_percent(m)))
            if len(joints) == 2:
                items.append(_joint_pair(joints))
                joints = []
        elif (m := _METHOD.match(s)):
            methods.append(m.group("m"))
        elif s.startswith("We observed ") and evidence is None:
            evidence = s[len("We observed "):].rstrip(".")
        elif s.startswith("We know that ") or (rules and " causes " in s):
            rules.append(s)
        else:
            raise CladderParseError(f"cannot parse: unrecognised sentence {s[:60]!r}")
    flush()
    if joints:
        raise CladderParseError("cannot parse: a joint probability without its pair")
    return tuple(items), tuple(methods), tuple(rules), evidence


def _joint_pair(joints) -> JointPair:
    """Two "The probability of A and B" sentences sharing the second part B: cut both at the same " and "."""
    (t0, p0, h0), (t1, p1, h1) = joints
    found = set()
    for m in re.finditer(" and ", t0):
        tail = t0[m.end():]
        if t1.endswith(" and " + tail) and t1[:-len(" and " + tail)] != t0[:m.start()]:
            found.add((t0[:m.start()], t1[:-len(" and " + tail)], tail))
    if len(found) != 1:
        raise CladderParseError(f"cannot parse: joint probability {t0!r} splits {len(found)} ways")
    a0, a1, b = found.pop()
    return JointPair((a0, a1), b, (p0, p1), max(h0, h1))


def parse_text(text: str) -> ParsedText:
    """Whole question text -> ParsedText; CladderParseError when any sentence is not in CLadder's wording."""
    if not isinstance(text, str):
        raise CladderParseError("cannot parse: not a string")
    body = " ".join(text.split())
    if not body.startswith(PREAMBLE):
        raise CladderParseError("cannot parse: no CLadder preamble ('Imagine a self-contained, hypothetical world')")
    sentences = split_sentences(body[len(PREAMBLE):])
    if not sentences or not sentences[-1].endswith("?"):
        raise CladderParseError("cannot parse: the text does not end with a question")
    graph, names, unobserved, used = parse_graph(sentences[:-1])
    items, methods, rules, evidence = parse_given(sentences[used:-1])
    return ParsedText(graph, names, unobserved, items, sentences[-1], methods, rules, evidence)
