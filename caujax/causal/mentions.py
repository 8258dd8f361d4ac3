"""Variables and their values in free (paraphrased) text: an inventory from the graph, mentions, value words."""
from __future__ import annotations

import re
from dataclasses import dataclass

# Value words with a polarity: -1 for the "low" side, +1 for the "high" side. Codes follow polarity (low -> 0).
NEG = set("""low small little few minimal minimum scant scarce meager meagre
insufficient inadequate limited lacking lack reduced decreased weak short slow mild
light cold cool dry absent poor bad negative unhealthy unfavorable unfavourable unsatisfactory deficient
sparse rare infrequent irregular inefficient unproductive unsuccessful unstable unreliable minor narrow thin
shallow quiet calm clear early young junior cheap brief moderate low-level restricted subpar inferior adverse
suboptimal unrefined diminished reduced minor""".split())
POS = set("""high large big great much many maximal maximum ample abundant
plentiful plenty sufficient adequate enough rich increased elevated strong long fast
quick severe heavy hot warm wet moist present good excellent positive healthy favorable favourable
satisfactory extensive frequent regular efficient productive successful stable reliable major wide thick deep
loud overcast late old senior expensive substantial considerable intense significant robust superior active competent
proficient satisfied employed accurate necessary appropriate qualified skilled advanced refined outstanding rapid
heightened optimal excessive available""".split())
NEGATORS = ("un", "in", "im", "non", "dis", "ir", "il")
FUNCTION = set("""the a an of in on to for with without and or both either neither nor is are was were be being been
has have had their its his her they them it this that these those who whose which when while where if given among
under at by as from into than then there also all each any some such one ones person people individual individuals
someone someone's subjects subject cases case instances instance patient patients student students""".split())
WEAK = set("""level levels status state states value values amount amounts rate rates degree degrees condition
conditions factor factors outcome outcomes result results measure measures quantity quantities number numbers time times
occurrence presence scenario scenarios""".split())
COPULA = set("""is are was were be being been remains remain remained stays stay stayed becomes become became set fixed
held maintained kept changed increased reduced decreased shifted switched lowered raised at to a an the level levels
state value also all both initially currently observed as equal equals instead still = : considered reaching
reach reaches reached attaining attain taking take exhibiting exhibit showing show having experiencing becoming
recorded measured found seen would could have had in shifts shift shifted shifting increases increase decreases
decrease transitions transition transitioned improved improves improve adjusted adjusts moves moved goes went drops
dropped rises rose falls fell switches switch turned turns made make constant steady actually really truly
originally""".split())
SCAFFOLD = set("""probability probabilities likelihood chance chances odds joint combined overall baseline marginal
conditional p directly direct indirect influences influence influenced affects affect affected impacts impact impacted
effect effects causal cause causes caused relationship relationships determines determine contributes contribute
leads lead drives drive shapes shape governs govern additionally furthermore moreover turn itself isolated hypothetical
world scenario specified following conditions factors links influencing additional solely governed consider imagine
mediator mediating mediators treatment treated when whenever""".split())

_VERBAL = {"increased", "reduced", "decreased", "lowered", "raised", "elevated", "improved", "diminished"}
_TOKEN = re.compile(r"[A-Za-z][A-Za-z']*|\d*\.\d+|\d+|[=(),;:?∧|\-]")


@dataclass(frozen=True)
class Tok:
    text: str        # lower case, possessive stripped
    start: int
    end: int


def tokenize(text: str) -> list[Tok]:
    out = []
    for m in _TOKEN.finditer(text):
        w = m.group(0).lower()
        if w.endswith("'s") or w.endswith("’s"):
            w = w[:-2]
        w = w.strip("'")
        if w:
            out.append(Tok(w, m.start(), m.end()))
    return out


def stem(w: str) -> str:
    if len(w) > 7 and w.endswith("ional"):          # educational -> education
        w = w[:-2]
    if len(w) > 5 and w.endswith("sses"):           # illnesses -> illness
        return w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith("s") and not w.endswith("ss") and not w.endswith("us"):
        return w[:-1]
    return w


def polarity(word: str) -> int | None:
    """+1 / -1 for a known value word, None otherwise (negated forms like `unhealthy` flip a known positive)."""
    w = word.lower()
    if w in NEG:
        return -1
    if w in POS:
        return 1
    for p in NEGATORS:
        if w.startswith(p) and w[len(p):] in POS:
            return -1
    return None


def is_value_word(word: str) -> bool:
    return polarity(word) is not None


@dataclass
class Var:
    name: str
    tokens: frozenset          # stemmed content tokens


class Inventory:
    """Variables named in the graph description; a mention links to the variable sharing most content tokens."""

    def __init__(self, phrases: list[str]):
        vars_: list[Var] = []
        for p in phrases:
            toks = content_tokens(p)
            if not toks or toks <= {stem(w) for w in WEAK}:
                continue
            same = [v for v in vars_ if toks <= v.tokens or v.tokens <= toks]
            if same:
                v = same[0]
                if len(toks) > len(v.tokens):       # keep the fuller name
                    v.name, v.tokens = p, toks
                continue
            vars_.append(Var(p, toks))
        self.vars = vars_
        self.name_tokens = set().union(*(v.tokens for v in vars_)) if vars_ else set()
        self.preferred: set[int] = set()

    def alias(self, phrase: str) -> int | None:
        """Fold a rewording of a graph variable (the instruction's `X` and `Y`) into the one variable it shares a
        word with; returns that variable, or None when it shares words with none or several."""
        toks = content_tokens(phrase)
        strong = {t for t in toks if t not in {stem(w) for w in WEAK}}
        hits = [i for i, v in enumerate(self.vars) if strong & v.tokens]
        exact = [i for i in hits if self.vars[i].tokens == toks]
        if exact:
            return exact[0]
        if len(hits) == 1:
            v = self.vars[hits[0]]
            v.tokens = frozenset(v.tokens | toks)
            self.name_tokens |= toks
            return hits[0]
        return self.link(toks)

    def link(self, tokens: frozenset) -> int | None:
        """Index of the single best variable for a mention's tokens; None when absent or tied."""
        strong = {t for t in tokens if t not in {stem(w) for w in WEAK}}
        if not strong:
            return None
        scores = [(len(tokens & v.tokens) + (tokens == v.tokens), i) for i, v in enumerate(self.vars)
                  if strong & v.tokens]
        if not scores:
            return None
        scores.sort(reverse=True)
        if len(scores) > 1 and scores[0][0] == scores[1][0]:
            tied = [i for s, i in scores if s == scores[0][0] and i in self.preferred]
            return tied[0] if len(tied) == 1 else None     # a tie goes to the question's treatment or outcome
        return scores[0][1]


def content_tokens(phrase: str) -> frozenset:
    return frozenset(stem(t.text) for t in tokenize(phrase)
                     if t.text.isalpha() and t.text not in FUNCTION and t.text not in SCAFFOLD
                     and not is_value_word(t.text))


@dataclass
class Mention:
    var: int
    value: str | None
    start: int        # token index
    end: int
    link: tuple = ()  # words between the mention and a value on its right ("would", "have", "been")


def find_mentions(toks: list[Tok], inv: Inventory) -> list[Mention]:
    """Variable mentions (maximal runs of name tokens, joined by of/in/'s) with their attached value words."""
    names = inv.name_tokens
    spans, i = [], 0
    while i < len(toks):
        if stem(toks[i].text) in names and not is_value_word(toks[i].text):
            j = i + 1
            while j < len(toks):
                t = toks[j].text
                if stem(t) in names and not is_value_word(t):
                    j += 1
                elif t in ("of", "in", "the", "-", "an", "a") and j + 1 < len(toks) \
                        and stem(toks[j + 1].text) in names and not is_value_word(toks[j + 1].text):
                    j += 2
                elif t in ("of", "in") and j + 2 < len(toks) and toks[j + 1].text in ("the", "an", "a") \
                        and stem(toks[j + 2].text) in names and not is_value_word(toks[j + 2].text):
                    j += 3                # "rainfall in the area"
                else:
                    break
            var = inv.link(frozenset(stem(toks[k].text) for k in range(i, j) if toks[k].text not in FUNCTION))
            if var is not None:
                spans.append(Mention(var, None, i, j))
            i = j
        else:
            i += 1
    for m in spans:
        right = _right_value(toks, m.end)
        if right:
            m.value, m.link = right, _link_words(toks, m.end, right)
        else:
            m.value = _left_value(toks, m.start)
    # "both A and B are low": a value after the last of a conjoined list goes to every member
    for a, b in zip(spans, spans[1:]):
        between = [t.text for t in toks[a.end:b.start]]
        if a.value is None and b.value is not None and between in (["and"], [","], [",", "and"], ["or"]):
            if _right_value(toks, b.end):
                a.value = b.value
    return spans


def _right_value(toks, k) -> str | None:
    """`X is low`, `X = high`, `X at a high level`, `X low` (up to four linking words)."""
    if k + 1 < len(toks) and toks[k].text.isalpha() and toks[k].text not in FUNCTION and toks[k].text not in COPULA \
            and not is_value_word(toks[k].text) and toks[k + 1].text in ("is", "are", "was", "were", "being", "would",
                                                                         "remains", "remained"):
        k += 1                    # one unnamed word of the mention: "physical health were low" for "physical ..."
    for step in range(5):
        if k + step >= len(toks):
            return None
        w = toks[k + step].text
        nxt = toks[k + step + 1].text if k + step + 1 < len(toks) else ""
        if w in ("increased", "reduced", "decreased", "lowered", "raised", "elevated") and nxt in ("to", "at"):
            continue                  # "X increased to high": the participle is the verb, not the value
        if w in _VERBAL and (step == 0 or toks[k + step - 1].text in ("have", "has", "be", "will", "would", "could")):
            return None               # "would Y have increased": a verb about the probability, not Y's value
        if is_value_word(w) or w in ("yes", "no") and step > 0:
            return w
        if step > 0 and toks[k + step - 1].text in ("is", "are", "was", "were", "being", "=") and w.isalpha() \
                and w not in FUNCTION and w not in SCAFFOLD and w not in COPULA and len(w) > 2:
            return w                  # an unknown adjective right after a copula: a value of unknown polarity
        if w not in COPULA and w not in WEAK and w not in ("more", "less", "likely", "probably", "probable"):
            return None
    return None


def _link_words(toks, k, value) -> tuple:
    out = []
    for t in toks[k:k + 6]:
        if t.text == value:
            break
        out.append(t.text)
    return tuple(out)


_LEFT_SKIP = {"a", "an", "the", "both", "having", "of", "levels", "level", "amounts", "amount", "-", "degree",
              "degrees", "rates", "rate"}


def _left_value(toks, k) -> str | None:
    """`low X`, `a high X`, `high levels of X`."""
    j = k - 1
    if j >= 1 and toks[j].text.isalpha() and toks[j].text not in FUNCTION and toks[j].text not in SCAFFOLD \
            and toks[j].text not in COPULA and not is_value_word(toks[j].text) and is_value_word(toks[j - 1].text):
        j -= 1                    # one unnamed word of the mention: "high air pressure" for "atmospheric pressure"
    while j >= 0 and toks[j].text in _LEFT_SKIP:
        j -= 1
    if j >= 0 and is_value_word(toks[j].text):
        return toks[j].text
    return None
