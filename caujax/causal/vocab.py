"""Variable names for generated problems: real-world scenarios, random letter strings and nonsense words."""
from __future__ import annotations

import random

# Each scenario: (variable name, (value coded 0, value coded 1)). Names are lower case, as the prompts use them.
SCENARIOS: dict[str, list[tuple[str, tuple[str, str]]]] = {
    "health": [
        ("amount of exercise", ("low", "high")), ("diet quality", ("poor", "good")),
        ("sleep duration", ("short", "long")), ("stress level", ("low", "high")),
        ("blood pressure", ("normal", "elevated")), ("body weight", ("normal", "overweight")),
        ("smoking habit", ("absent", "present")), ("physical health", ("poor", "good")),
        ("mental health", ("poor", "good")), ("hospital visits", ("few", "many")),
        ("medication adherence", ("irregular", "regular")),
    ],
    "farming": [
        ("amount of rainfall", ("small", "large")), ("soil quality", ("poor", "rich")),
        ("fertilizer use", ("low", "high")), ("pest infestation", ("mild", "severe")),
        ("irrigation", ("insufficient", "sufficient")), ("sunlight exposure", ("limited", "ample")),
        ("plant growth", ("stunted", "vigorous")), ("crop yield", ("low", "high")),
        ("farm income", ("low", "high")), ("soil moisture", ("dry", "wet")),
    ],
    "education": [
        ("parental involvement", ("minimal", "active")), ("study time", ("short", "long")),
        ("class size", ("small", "large")), ("teacher experience", ("limited", "extensive")),
        ("student motivation", ("low", "high")), ("exam score", ("low", "high")),
        ("school funding", ("insufficient", "sufficient")), ("homework completion", ("incomplete", "complete")),
        ("attendance rate", ("low", "high")), ("graduation outcome", ("failed", "graduated")),
    ],
    "work": [
        ("job training", ("absent", "present")), ("work experience", ("limited", "extensive")),
        ("job satisfaction", ("low", "high")), ("salary", ("low", "high")),
        ("workload", ("light", "heavy")), ("employee productivity", ("low", "high")),
        ("promotion chance", ("unlikely", "likely")), ("team morale", ("low", "high")),
        ("overtime hours", ("few", "many")), ("burnout risk", ("low", "high")),
    ],
    "city": [
        ("traffic congestion", ("light", "heavy")), ("public transit access", ("limited", "abundant")),
        ("air pollution", ("low", "high")), ("commute time", ("short", "long")),
        ("road quality", ("poor", "good")), ("noise level", ("quiet", "loud")),
        ("housing cost", ("low", "high")), ("green space", ("scarce", "plentiful")),
        ("accident rate", ("low", "high")), ("resident happiness", ("unhappy", "happy")),
    ],
    "business": [
        ("advertising budget", ("small", "large")), ("product quality", ("low", "high")),
        ("market demand", ("weak", "strong")), ("customer satisfaction", ("low", "high")),
        ("sales revenue", ("low", "high")), ("competitor pricing", ("low", "high")),
        ("brand reputation", ("poor", "good")), ("profit margin", ("thin", "wide")),
        ("inventory level", ("low", "high")), ("customer complaints", ("few", "many")),
    ],
    "weather": [
        ("air pressure", ("low", "high")), ("humidity", ("low", "high")),
        ("temperature", ("cold", "hot")), ("cloud cover", ("clear", "overcast")),
        ("wind speed", ("calm", "strong")), ("precipitation", ("light", "heavy")),
        ("flood risk", ("low", "high")), ("visibility", ("poor", "good")),
        ("ice formation", ("absent", "present")), ("road closures", ("few", "many")),
    ],
    "technology": [
        ("server load", ("light", "heavy")), ("network latency", ("low", "high")),
        ("code quality", ("poor", "good")), ("test coverage", ("low", "high")),
        ("bug count", ("few", "many")), ("release frequency", ("rare", "frequent")),
        ("user engagement", ("low", "high")), ("system uptime", ("low", "high")),
        ("security incidents", ("few", "many")), ("developer experience", ("junior", "senior")),
    ],
}

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


def letter_name(rng: random.Random, length: int = 4) -> str:
    """A random lower-case letter string, as CaLM's FAKE mode names nodes (e.g. `kdns`)."""
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))


def nonsense_name(rng: random.Random) -> str:
    """A pronounceable nonsense word of 2-3 syllables (e.g. `belvoran`)."""
    syll = [rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3))]
    return "".join(syll) + rng.choice(["", "n", "r", "x", "t"])


def node_names(rng: random.Random, n: int, style: str) -> list[tuple[str, tuple[str, str]]]:
    """n distinct (name, (value0, value1)) for style "real" | "letters" | "nonsense"."""
    if style == "real":
        topics = [t for t, vs in SCENARIOS.items() if len(vs) >= n]
        if topics:
            return rng.sample(SCENARIOS[rng.choice(topics)], n)
        pool = sorted({v for vs in SCENARIOS.values() for v in vs})     # big graphs mix scenarios
        if n > len(pool):
            raise ValueError(f"style 'real' has {len(pool)} variable names, {n} asked")
        return rng.sample(pool, n)
    if style not in ("letters", "nonsense"):
        raise ValueError(f"style must be real, letters or nonsense, got {style!r}")
    make = letter_name if style == "letters" else nonsense_name
    names: list[str] = []
    while len(names) < n:
        w = make(rng)
        # no name may be a prefix of another: the parser reads node names greedily
        if all(not (w.startswith(o) or o.startswith(w)) for o in names):
            names.append(w)
    return [(w, ("low", "high")) for w in names]
