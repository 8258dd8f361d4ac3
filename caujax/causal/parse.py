"""Parse CauGym/CaLM problem text in the generators' own wording into a graph, a Query and the given Facts."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from caujax.causal.answer import TYPES, infer_type
from caujax.causal.scm import CausalGraph
from caujax.causal.tasks import Facts, Query, Term


class ParseError(ValueError):
    """The text is not in a wording this parser knows; the message says which part failed."""


EDGE_WORDS = " has a direct effect on "
_ABBREV = re.compile(r"\b(e\.g|i\.e|etc|vs|approx|Dr|Mr|Mrs|Ms|St)\.", re.IGNORECASE)
_NUM = r"(?P<p>-?\d+(?:\.\d+)?)"
_FACT = re.compile(
    r"(?:For those with (?P<given>.+?), the probability of (?P<t1>.+?)|The probability of (?P<t2>.+?)) is " + _NUM,
    re.IGNORECASE | re.DOTALL)
_ANY_LABEL = re.compile(r"\s*\((?P<letter>[A-Z])=(?P<code>[01])\)")
_TYPE_IN_INSTRUCTION = re.compile(rf"\(({'|'.join(TYPES)})\)")
_INSTR_NODES = re.compile(r" of (?P<rest>.+?)\.?\s*$", re.IGNORECASE)


def norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


@dataclass
class ValueBook:
    """Value names per node -> 0/1 code. Inline labels `(A=0)` fix codes; otherwise first-seen name gets 0."""

    codes: dict = field(default_factory=dict)
    letters: dict = field(default_factory=dict)

    def code(self, node: str, name: str, label: tuple[str, int] | None = None) -> int:
        d = self.codes.setdefault(node, {})
        name = norm(name)
        if label is not None:
            letter, c = label
            if self.letters.setdefault(node, letter) != letter:
                raise ParseError(f"node {node!r} labelled both {self.letters[node]} and {letter}")
            if d.get(name, c) != c:
                raise ParseError(f"value {name!r} of {node!r} labelled both {d[name]} and {c}")
            other = [n for n, k in d.items() if k == c and n != name]
            if other:
                raise ParseError(f"values {other[0]!r} and {name!r} of {node!r} share code {c}")
            d[name] = c
            return c
        if name in d:
            return d[name]
        used = set(d.values())
        if len(used) >= 2:
            raise ParseError(f"node {node!r} has a third value {name!r} besides {sorted(d)}")
        d[name] = 0 if 0 not in used else 1
        return d[name]

    def names(self, node: str) -> dict[int, str]:
        return {c: n for n, c in self.codes.get(node, {}).items()}


@dataclass
class Parsed:
    graph: CausalGraph
    query: Query
    facts: Facts
    values: ValueBook
    inline_labels: bool
    unread_numbers: int = 0     # numbers in the data section that no template sentence accounted for


def split_sections(text: str) -> dict[str, str]:
    """{'info', 'data', 'instruction', 'question'} from a problem in the generator layout."""
    lines = text.replace("\r", "").split("\n")
    out = {"info": "", "data": [], "instruction": "", "question": ""}
    where = None
    for line in lines:
        s = line.strip()
        if s.startswith("Input Info:"):
            out["info"], where = s[len("Input Info:"):], "data"
        elif s.startswith("Instruction:"):
            out["instruction"], where = s[len("Instruction:"):].strip(), None
        elif s.startswith("Question:"):
            out["question"], where = s[len("Question:"):].strip(), None
        elif s.startswith("Provide the calculation result"):
            where = None
        elif where == "data" and s:
            out["data"].append(s)
    out["data"] = " ".join(out["data"])
    return out


def parse_graph(info: str) -> CausalGraph:
    """Edges from the `X has a direct effect on Y.` sentences (node names may hold `e.g.`)."""
    body = info.split("relationships:", 1)[1] if "relationships:" in info else info.split(":", 1)[-1]
    if EDGE_WORDS not in body:
        raise ParseError("no 'has a direct effect on' sentence in the graph description")
    protected = _ABBREV.sub(lambda m: m.group(1).replace(".", "\x00") + "\x00", body)
    edges = []
    for piece in protected.split("."):
        piece = piece.replace("\x00", ".").strip()
        if not piece:
            continue
        if piece.count(EDGE_WORDS) != 1:
            raise ParseError(f"graph sentence not in 'X has a direct effect on Y' form: {piece[:120]!r}")
        a, b = piece.split(EDGE_WORDS)
        edges.append((norm(a), norm(b)))
    try:
        return CausalGraph.from_edges(edges)
    except ValueError as e:
        raise ParseError(str(e)) from None


def name_key(name: str) -> str:
    """Spelling-insensitive key: the generator writes one node both as `(e.g. wind, humidity)` and
    `(e.g. wind and humidity)`."""
    return " ".join(w for w in re.findall(r"[a-z0-9']+", name.lower()) if w not in ("and", "or", "the", "a", "an"))


class _Names:
    """Node-name anchored splitting of `A being v (A=0), B being w and C being u` lists."""

    def __init__(self, nodes):
        self.nodes = list(nodes)
        self.by_key = {name_key(n): n for n in self.nodes}
        self.surface = {n: n for n in self.nodes}          # every spelling seen -> node
        self._compile()

    def _compile(self):
        forms = sorted(self.surface, key=len, reverse=True)
        self.alt = "|".join(re.escape(n) for n in forms)
        self.start = re.compile(rf"(?:^|(?<=, )|(?<= and ))({self.alt}) being ", re.IGNORECASE)

    def resolve(self, name: str) -> str:
        name = norm(name)
        node = self.surface.get(name) or self.by_key.get(name_key(name))
        if node is None:
            raise ParseError(f"{name!r} is not a node of the graph")
        if name not in self.surface:
            self.surface[name] = node
            self._compile()
        return node

    def assignment(self, text: str, book: ValueBook) -> tuple[tuple[str, int], ...]:
        text = text.strip()
        if _ANY_LABEL.search(text):
            pairs = self._split_labelled(text)
        else:
            pairs = self._split_by_names(text)
        out = []
        for node, raw, label in pairs:
            if not raw.strip():
                raise ParseError(f"empty value for {node!r} in {text[:120]!r}")
            out.append((node, book.code(node, raw, label)))
        if len({n for n, _ in out}) != len(out):
            raise ParseError(f"a node repeats in {text[:120]!r}")
        return tuple(out)

    def _split_labelled(self, text):
        """Labels end every item, so they split the list even where a name is spelt unlike the graph."""
        out, pos = [], 0
        for m in _ANY_LABEL.finditer(text):
            seg = re.sub(r"^(,\s*and|,|\s*and)\s+", "", text[pos:m.start()].strip()).strip()
            pos = m.end()
            hit = self.start.match(seg)
            if hit:
                node, raw = self.surface[norm(hit.group(1))], seg[hit.end():]
            elif " being " in seg:
                name, raw = seg.split(" being ", 1)
                node = self.resolve(name)
            else:
                raise ParseError(f"cannot read {seg[:120]!r} as 'node being value'")
            out.append((node, raw, (m.group("letter"), int(m.group("code")))))
        if text[pos:].strip():
            raise ParseError(f"unlabelled tail {text[pos:][:80]!r} in a labelled list")
        return out

    def _split_by_names(self, text):
        hits = list(self.start.finditer(text))
        if not hits or hits[0].start() != 0:
            raise ParseError(f"cannot read node/value list {text[:120]!r}")
        out = []
        for i, h in enumerate(hits):
            end = hits[i + 1].start() if i + 1 < len(hits) else len(text)
            raw = text[h.end():end]
            if i + 1 < len(hits):
                raw = re.sub(r"(,\s*and|,|\s+and)\s*$", "", raw)
            out.append((self.surface[norm(h.group(1))], raw, None))
        return out


def parse_facts(data: str, names: _Names, book: ValueBook) -> tuple[Facts, int]:
    """The template fact sentences of the data section, and how many sentences were read."""
    facts, n = Facts(), 0
    for m in _FACT.finditer(data):
        n += 1
        target = names.assignment(m.group("t1") or m.group("t2"), book)
        given = names.assignment(m.group("given"), book) if m.group("given") else ()
        p = float(m.group("p"))
        if not 0.0 <= p <= 1.0:
            raise ParseError(f"probability {p} outside [0, 1]")
        facts.add(Term(target, given), p)
    return facts, n


_Q = {
    "ATE": r"If (?P<x>{N}) is changed to be (?P<xv>.+?), will (?P<y>{N}) be more likely to be (?P<yv>.+?)\?",
    "CDE": r"Conditioned on (?P<cond>.+?), if the (?P<x>{N}) had been (?P<xv>.+?), would the (?P<y>{N}) have been "
           r"more likely to be (?P<yv>.+?)\?",
    "ETT": r"For those with (?P<x>{N}) being (?P<xf>.+?), if their (?P<x2>{N}) had been (?P<xv>.+?), would the "
           r"(?P<y>{N}) have been more likely to be (?P<yv>.+?)\?",
    "NDE": r"Suppose the mediator keeps constant when (?P<x>{N}) is changed to be (?P<xv>.+?), would the (?P<y>{N}) "
           r"have been more likely to be (?P<yv>.+?)\?",
    "NIE": r"Suppose (?P<x>{N}) is held constant and the mediator changes to whatever value it would have attained "
           r"under (?P<x2>{N}) changing to be (?P<xv>.+?), would (?P<y>{N}) have been more likely to be (?P<yv>.+?)\?",
    "PN": r"Given that (?P<x>{N}) was (?P<xf>.+?) and (?P<y>{N}) was (?P<yf>.+?), what is the (?P<bound>upper|lower) "
          r"bound of the probability of the (?P<y2>{N}) would have been (?P<yv>.+?) if the (?P<x2>{N}) had been "
          r"(?P<xv>.+?)\?",
    "PS": r"Given that (?P<x>{N}) was (?P<xf>.+?) and (?P<y>{N}) was (?P<yf>.+?), what is the (?P<bound>upper|lower) "
          r"bound of the probability that (?P<y2>{N}) would have been (?P<yv>.+?) if the (?P<x2>{N}) had been "
          r"(?P<xv>.+?)\?",
}


def parse_question(qtype: str, question: str, names: _Names, book: ValueBook) -> Query:
    m = re.fullmatch(_Q[qtype].format(N=names.alt), question.strip(), re.IGNORECASE | re.DOTALL)
    if not m:
        raise ParseError(f"{qtype} question not in the template wording: {question[:160]!r}")
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    X, Y = names.resolve(g["x"]), names.resolve(g["y"])
    for k, ref in (("x2", X), ("y2", Y)):
        if k in g and names.resolve(g[k]) != ref:
            raise ParseError(f"question names {g[k]!r} where {ref!r} was expected")
    x = book.code(X, g["xv"])
    y = book.code(Y, g["yv"])
    if "xf" in g and book.code(X, g["xf"]) != 1 - x:
        raise ParseError(f"factual and hypothetical values of {X!r} are the same")
    if "yf" in g and book.code(Y, g["yf"]) != 1 - y:
        raise ParseError(f"factual and hypothetical values of {Y!r} are the same")
    given = names.assignment(g["cond"], book) if "cond" in g else ()
    return Query(qtype, X, Y, x, y, given, g.get("bound", "").lower() or None)


def parse_problem(text: str) -> Parsed:
    """Parse a problem in the CaLM `basic` wording or the newer generator's (`(A=0)` labels). Raises ParseError."""
    sec = split_sections(text)
    if not sec["question"]:
        raise ParseError("no 'Question:' line")
    graph = parse_graph(sec["info"])
    names = _Names(graph.nodes)
    book = ValueBook()
    qtype = None
    if sec["instruction"]:
        t = _TYPE_IN_INSTRUCTION.search(sec["instruction"])
        qtype = t.group(1) if t else None
    qtype = qtype or infer_type(sec["question"])
    if qtype not in TYPES:
        raise ParseError(f"cannot tell the task type from {sec['question'][:160]!r}")
    facts, n_read = parse_facts(sec["data"], names, book)
    query = parse_question(qtype, sec["question"], names, book)
    n_numbers = len(re.findall(r"(?<![\w.])\d*\.\d+", sec["data"]))
    return Parsed(graph, query, facts, book, bool(book.letters), max(0, n_numbers - n_read))
