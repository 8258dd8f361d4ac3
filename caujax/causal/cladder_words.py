"""Word-level reading of CLadder's value phrases: which variable a phrase talks about (shared word stems with the
variable's name or its other phrases) and which of its two values it names (negation and antonym cues against a
phrase whose value is known).

Plain English knowledge only: stems, negation words and a short list of antonym pairs. Nothing here knows a
CLadder story; every call compares phrases of the one question being read.
"""
from __future__ import annotations

import functools
import re

# words that carry no variable identity ("people who are not X", "those with X", "the person gets X")
STOP = frozenset("""the a an of to who whom whose that which with and or for in at by from as is are was were be
being been do does did has have had having get gets got person people individual individuals those them they their
its his her there it this student students patient patients infant infants child children""".split())
NEGATION = frozenset("not no non without never none cannot nor neither absence lack lacking".split())
NEG_PREFIXES = ("non", "un", "in", "im", "dis", "ir", "il")
# one concept in several words that a suffix stripper cannot join
SYNONYMS = (frozenset("die dies died dead death dying".split()),
            frozenset("live lives lived alive life survive survives survived survival surviving".split()),
            frozenset("high higher increased more".split()), frozenset("low lower reduced decreased less".split()))
# verbs that turn the thing they govern into its absence ("recovers from scurvy", "avoids cholera")
REVERSAL = frozenset("""avoid avoids avoided avoiding recover recovers recovered prevent prevents prevented lack lacks
lose loses lost escape escapes escaped quit quits refuse refuses refused stop stops stopped free cure cured""".split())
# antonym pairs of value words (general English): a phrase with one, a reference with the other -> opposite values
ANTONYMS = (("high", "low"), ("large", "small"), ("big", "small"), ("long", "short"), ("thick", "thin"),
            ("wet", "dry"), ("dark", "bright"), ("dark", "light"), ("old", "young"), ("male", "female"),
            ("alive", "dead"), ("accepted", "rejected"), ("admitted", "rejected"), ("increased", "reduced"),
            ("increased", "decreased"), ("increase", "decrease"), ("more", "less"), ("good", "bad"),
            ("good", "poor"), ("rich", "poor"), ("global", "local"), ("strong", "weak"), ("fast", "slow"),
            ("early", "late"), ("hot", "cold"), ("happy", "sad"), ("happiness", "sadness"), ("kind", "mean"),
            ("clean", "polluted"), ("clean", "dirty"), ("present", "absent"), ("open", "closed"), ("win", "lose"),
            ("pass", "fail"), ("on", "off"), ("heavy", "light"), ("married", "single"), ("release", "execute"),
            ("retain", "fire"))


_SYNONYM_PAIRS = (("dead", "alive"),)         # the SYNONYMS groups are each other's opposites


def tokens(text: str) -> list[str]:
    """Lower-case word tokens; "n't" -> "not", possessive "'s" dropped, hyphenated words split."""
    text = text.lower().replace("n't", " not").replace("cannot", "can not").replace("'s", "").replace("’s", "")
    return re.findall(r"[a-z0-9]+", text)


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A crude suffix stripper (enough to meet "smokers"/"smoking", "famous"/"fame", "vaccinated"/"vaccination")."""
    for suffix in ("izations", "ization", "ations", "ation", "ities", "ity", "ness", "ments", "ment", "ings", "ing",
                   "ious", "ous", "ers", "er", "ied", "ies", "ed", "es", "s", "y", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= (2 if suffix in ("ing", "es") else 3):
            return word[:-len(suffix)]       # "going" / "goes" -> "go"
    return word


@functools.lru_cache(maxsize=1 << 16)
def same_word(a: str, b: str) -> bool:
    """One word in two forms: equal stems, stems sharing a prefix of 4+ letters (3 when one stem is that long), or
    one SYNONYMS group."""
    if any(a in g and b in g for g in SYNONYMS):
        return True
    a, b = stem(a), stem(b)
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a == b or n >= 4 or (n >= 3 and min(len(a), len(b)) == n)


@functools.lru_cache(maxsize=1 << 16)
def content(text: str) -> tuple[str, ...]:
    return tuple(w for w in tokens(re.sub(r"\bout of\b", " ", text.lower())) if w not in STOP and w not in NEGATION)


@functools.lru_cache(maxsize=1 << 16)
def similarity(phrase: str, name: str) -> float:
    """Share of `name`'s content words that `phrase` uses in some form, in [0, 1]: the same word, its prefix
    negation or an antonym all say the phrase is about that word's variable ("young" for "old age")."""
    ref = content(name)
    if not ref:
        return 0.0
    words = content(phrase)
    return sum(any(same_word(w, v) or antonyms(w, v) for v in words) for w in ref) / len(ref)


def negated(word: str, ref_words) -> bool:
    """`word` is a prefix negation ("unintelligent", "nonsmokers", "inactive") of some word in `ref_words`."""
    return any(word != r and word.startswith(p) and same_word(word[len(p):], r) and len(word) - len(p) >= 3
               for p in NEG_PREFIXES for r in ref_words)


@functools.lru_cache(maxsize=1 << 16)
def antonyms(a: str, b: str) -> bool:
    """Opposite values of one word: an ANTONYMS pair (in any inflection, "dies"/"survival" via SYNONYMS) or a
    prefix negation ("inactive"/"active")."""
    if negated(a, (b,)) or negated(b, (a,)):
        return True
    return any((same_word(a, x) and same_word(b, y)) or (same_word(a, y) and same_word(b, x))
               for x, y in ANTONYMS + _SYNONYM_PAIRS)


def flips(phrase: str, reference: str) -> int | None:
    """How `phrase`'s value relates to `reference`'s: 0 same value, 1 the other value, None when it cannot tell.

    Content words of both are matched by stem; an unmatched word of one that is an antonym or prefix negation of an
    unmatched word of the other ("bright"/"dark", "inactive"/"active") flips the value, as does each negation word
    ("not", "no", "out of" ...), as does a REVERSAL verb ("recovers from scurvy" against "scurvy"). Words left
    unexplained on both sides ("dies" against "recovering") may mean anything: None. So does sharing no word at all.
    Extra words on one side only are fine ("the patient is old" against "old age", "the employee has a high
    salary" against "high salary")."""
    p, r = content(phrase), content(reference)
    if not any(same_word(a, b) or antonyms(a, b) for a in p for b in r):
        return None
    left_p = [w for w in p if not any(same_word(w, v) for v in r)]
    left_r = [w for w in r if not any(same_word(w, v) for v in p)]
    cues = 0
    for w in list(left_p):
        match = next((v for v in left_r if antonyms(w, v)), None)
        if match is not None:
            left_p.remove(w)
            left_r.remove(match)
            cues += 1
    for left in (left_p, left_r):
        cues += sum(w in REVERSAL for w in left)
        left[:] = [w for w in left if w not in REVERSAL]
    if left_p and left_r:
        return None                     # each says something the other does not ("dies" / "recovering")
    cues += sum(w == "not" for w in _norm_tokens(phrase)) + sum(w == "not" for w in _norm_tokens(reference))
    return cues % 2


def _norm_tokens(text: str) -> list[str]:
    """Tokens with every negation word written "not" (so "non-male" meets "not male"; "out of wax" is "not wax")."""
    return ["not" if w in NEGATION else w for w in tokens(re.sub(r"\bout of\b", "not", text.lower()))]


def _hits(words, distinct) -> int:
    return sum(any(w == d or (len(w) > 3 and len(d) > 3 and same_word(w, d)) for d in distinct) for w in words)


def negations(words, others) -> int:
    """Negation words plus prefix negations of a word in `others` ("nonsmokers" against "smokers")."""
    return sum(w == "not" for w in words) + sum(negated(w, others) for w in words)


def value_of(phrase: str, pair: tuple[str, str]) -> int | None:
    """Which of a variable's (value 0, value 1) phrases `phrase` names. Exact match first. Then negation: when the
    pair's phrases differ in negation parity ("not jyka" / "jyka", "nonsmokers" / "smokers"), the side with the
    phrase's parity. Else the words that tell the pair apart ({"on", "time"} vs {"late"}): the side whose words the
    phrase uses more. None when unclear."""
    if phrase in pair:
        return pair.index(phrase) if pair[0] != pair[1] else None
    t0, t1, words = _norm_tokens(pair[0]), _norm_tokens(pair[1]), _norm_tokens(phrase)
    if not set(content(phrase)) & {w for t in (t0, t1) for w in t} and not any(
            same_word(a, b) for a in content(phrase) for b in t0 + t1):
        return None                     # shares no word with the pair: about something else
    n0, n1 = negations(t0, t1) % 2, negations(t1, t0) % 2
    if n0 != n1:
        n = negations(words, t0 + t1) % 2
        return 0 if n == n0 else 1
    d0 = [w for w in t0 if w not in t1]
    d1 = [w for w in t1 if w not in t0]
    h0, h1 = _hits(words, d0), _hits(words, d1)
    if h0 != h1:
        return 0 if h0 > h1 else 1
    return None
