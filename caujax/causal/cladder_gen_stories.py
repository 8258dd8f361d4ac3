"""Stories for new CLadder-style problems (Jin et al., NeurIPS 2023): our own nonsense-word and real-world stories.

CLadder puts each causal graph into words with a story: a name for every variable and a phrase for each of its two
values. This module holds our stories (none is taken from the release) and the phrase builders the templates use.
Nonsense stories fill any graph, as CLadder's do; each real story belongs to one graph and says which way X should
push Y by common sense (`sign`), which sorts its items into CLadder's "easy" and "hard" classes; its `odd` variable
swaps X for something unrelated to Y, CLadder's "anticommonsense" variant.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Var:
    """name: the variable (graph sentences, Method 1/2, mediation questions); yes/no: noun phrases for 1 and 0."""

    name: str
    yes: str
    no: str


def word(w: str) -> Var:
    """A nonsense variable, worded as CLadder words its nonsense stories: "rixq" / "not rixq"."""
    return Var(w, w, f"not {w}")


@dataclass(frozen=True)
class Story:
    """group: the population in "For {group} ..." (real stories; nonsense ones use "those who are ...").

    unit: one member of the group ("plot"). sign: +1/-1 when common sense expects X to raise/lower Y, 0 for none.
    """

    story_id: str
    graph: str | None            # None: a nonsense story, fits every graph
    roles: dict                  # "X", "Y", "V1", "V2", "V3" -> Var
    group: str = "those"
    unit: str = "individual"
    sign: int = 0
    odd: Var | None = None

    @property
    def nonsense(self) -> bool:
        return self.graph is None

    def anticommonsense(self) -> "Story":
        """X replaced by a variable with no plausible effect on Y (CLadder's anticommonsense stories)."""
        return replace(self, roles={**self.roles, "X": self.odd}, sign=0, odd=None)

    def var(self, role: str) -> Var:
        return self.roles[role]

    def np(self, role: str, value: int) -> str:
        v = self.roles[role]
        return v.yes if value else v.no

    def who(self, conds) -> str:
        """The population of a conditional probability: "those who are not rixq and are zuph" / "plots with compost
        and with poor soil nitrogen"."""
        if self.nonsense:
            return "those who " + " and ".join(("are " if v else "are not ") + self.roles[r].name for r, v in conds)
        return self.group + " " + " and ".join("with " + self.np(r, v) for r, v in conds)

    def observed(self, role: str, value: int) -> str:
        """Evidence of a deterministic counterfactual: "an individual is not zuph" / "the plot has compost"."""
        if self.nonsense:
            return f"an individual is {self.np(role, value)}"
        return f"the {self.unit} has {self.np(role, value)}"

    def otherwise(self, role: str, value: int) -> str:
        """The counterfactual clause of an ETT question: "the individual was not rixq" / "the plot had no compost"."""
        if self.nonsense:
            return f"the individual was {self.np(role, value)}"
        return f"the {self.unit} had {self.np(role, value)}"

    def would(self, role: str, value: int) -> str:
        """Start of a deterministic counterfactual question (CLadder's nonsense wording kept as released)."""
        if self.nonsense:
            return f"Would an individual is {self.np(role, value)}"
        return f"Would the {self.unit} have {self.np(role, value)}"


# Four- and five-letter nonsense words, none of them one of the release's 31 (checked by the tests).
_WORDS = ("blen drok fimp glosh prav quen snib trob vask wumb yelk zarn plib krem hodd mivo gupt spoz thrix nobe "
          "fask jurp kelb lomz nirt obvu pesk qurn roff suvx tolk ubry vemp wosk ykto zemb brav dusp egno fryl").split()

NONSENSE = tuple(Story(f"gen_nonsense{k}", None, dict(zip(("X", "V2", "Y", "V1", "V3"), map(word, _WORDS[i:i + 5]))))
                 for k, i in enumerate(range(0, len(_WORDS), 5)))


def _real(story_id, graph, group, unit, odd, **roles) -> Story:
    return Story(story_id, graph, {r: Var(*v) for r, v in roles.items()}, group, unit, +1, Var(*odd))


REAL = (
    _real("gen_compost", "chain", "plots", "plot", ("plot numbering", "an even plot number", "an odd plot number"),
          X=("compost use", "compost", "no compost"),
          V2=("soil nitrogen", "rich soil nitrogen", "poor soil nitrogen"),
          Y=("crop size", "a large crop", "a small crop")),
    _real("gen_chess", "fork", "players", "player", ("socks", "red socks", "grey socks"),
          X=("daily practice", "daily practice", "no daily practice"),
          V2=("opponent strength", "a weak opponent", "a strong opponent"),
          Y=("match outcome", "a match win", "a match loss")),
    _real("gen_hiring", "collision", "applicants", "applicant", ("birthday season", "a summer birthday",
                                                                 "a winter birthday"),
          X=("coding skill", "strong coding skill", "weak coding skill"),
          Y=("referral", "a referral", "no referral"),
          V3=("job offer", "a job offer", "no job offer")),
    _real("gen_dog", "confounding", "residents", "resident", ("hat wearing", "a hat habit", "no hat habit"),
          V1=("dog ownership", "a dog", "no dog"),
          X=("evening walks", "evening walks", "no evening walks"),
          Y=("sleep quality", "good sleep", "poor sleep")),
    _real("gen_reading", "mediation", "pupils", "pupil", ("seat position", "a window seat", "an aisle seat"),
          X=("literacy programme", "the literacy programme", "no literacy programme"),
          V2=("library use", "frequent library visits", "rare library visits"),
          Y=("reading score", "a high reading score", "a low reading score")),
    _real("gen_coffee", "frontdoor", "adults", "adult", ("shoe size", "a large shoe size", "a small shoe size"),
          V1=("job stress", "a stressful job", "a calm job"),
          X=("coffee intake", "heavy coffee drinking", "light coffee drinking"),
          V3=("caffeine level", "a high caffeine level", "a low caffeine level"),
          Y=("palpitations", "palpitations", "no palpitations")),
    _real("gen_gym", "IV", "residents", "resident", ("library card", "a library card", "no library card"),
          V2=("voucher mailing", "a mailed voucher", "no mailed voucher"),
          V1=("motivation", "high motivation", "low motivation"),
          X=("gym membership", "a gym membership", "no gym membership"),
          Y=("fitness", "good fitness", "poor fitness")),
    _real("gen_training", "arrowhead", "employees", "employee", ("desk plant", "a desk plant", "no desk plant"),
          X=("training course", "the training course", "no training course"),
          V2=("family connections", "family connections", "no family connections"),
          V3=("promotion", "a promotion", "no promotion"),
          Y=("pay band", "top-band pay", "lower-band pay")),
    _real("gen_storm", "diamond", "days", "day", ("radio music", "jazz on the radio", "pop on the radio"),
          X=("rain intensity", "heavy rain", "light rain"),
          V2=("fallen trees", "a fallen tree", "no fallen tree"),
          V3=("road flooding", "a flooded road", "a dry road"),
          Y=("delivery timing", "a late delivery", "an on-time delivery")),
    _real("gen_kitchen", "diamondcut", "evenings", "evening", ("table cloths", "blue table cloths",
                                                               "white table cloths"),
          V1=("holiday", "a public holiday", "no public holiday"),
          V3=("crowd", "a crowd", "no crowd"),
          X=("extra cooks", "extra cooks", "no extra cooks"),
          Y=("service speed", "fast service", "slow service")),
)

REAL += (
    _real("gen_bakery", "chain", "batches", "batch", ("baker's playlist", "a rock playlist", "a folk playlist"),
          X=("oven temperature", "a hot oven", "a cool oven"),
          V2=("crust colour", "a dark crust", "a pale crust"),
          Y=("bread sales", "high bread sales", "low bread sales")),
    _real("gen_kite", "fork", "afternoons", "afternoon", ("snack choice", "an apple snack", "a pear snack"),
          X=("wind strength", "a strong wind", "a light wind"),
          V2=("kite size", "a large kite", "a small kite"),
          Y=("flight height", "a high flight", "a low flight")),
    _real("gen_band", "collision", "auditioners", "auditioner", ("lunch order", "a soup lunch", "a salad lunch"),
          X=("singing voice", "a strong singing voice", "a weak singing voice"),
          Y=("stage presence", "a bold stage presence", "a shy stage presence"),
          V3=("band selection", "a band spot", "no band spot")),
    _real("gen_orchard", "confounding", "orchards", "orchard", ("gate colour", "a green gate", "a brown gate"),
          V1=("hillside slope", "a steep slope", "a gentle slope"),
          X=("netting", "bird netting", "no bird netting"),
          Y=("fruit harvest", "a full harvest", "a thin harvest")),
    _real("gen_bike", "mediation", "streets", "street", ("street name length", "a long street name",
                                                         "a short street name"),
          X=("bike lanes", "a bike lane", "no bike lane"),
          V2=("cyclists", "many cyclists", "few cyclists"),
          Y=("air quality", "clean air", "smoggy air")),
    _real("gen_screen", "frontdoor", "teenagers", "teenager", ("pillow colour", "a blue pillow", "a white pillow"),
          V1=("bedtime", "a night-owl bedtime", "an early bedtime"),
          X=("phone use", "evening phone use", "no evening phone use"),
          V3=("melatonin", "suppressed melatonin", "normal melatonin"),
          Y=("morning state", "morning grogginess", "a fresh morning")),
    _real("gen_tutoring", "IV", "students", "student", ("pencil brand", "a yellow pencil", "a black pencil"),
          V2=("seat lottery", "a lottery seat", "no lottery seat"),
          V1=("family support", "strong family support", "weak family support"),
          X=("tutoring", "weekly tutoring", "no weekly tutoring"),
          Y=("exam outcome", "a passed exam", "a failed exam")),
    _real("gen_fishing", "arrowhead", "boats", "boat", ("flag design", "a striped flag", "a plain flag"),
          X=("boat engine", "a new engine", "an old engine"),
          V2=("captain experience", "a veteran captain", "a novice captain"),
          V3=("fishing range", "distant fishing grounds", "near fishing grounds"),
          Y=("catch size", "a big catch", "a small catch")),
    _real("gen_festival", "diamond", "festivals", "festival", ("poster font", "a serif poster font",
                                                               "a plain poster font"),
          X=("ticket price", "a low ticket price", "a high ticket price"),
          V2=("crowd size", "a big crowd", "a small crowd"),
          V3=("food stall trade", "busy food stalls", "quiet food stalls"),
          Y=("festival budget", "a budget surplus", "a budget deficit")),
    _real("gen_clinic", "diamondcut", "clinic days", "clinic day", ("lobby music", "lobby music", "a silent lobby"),
          V1=("flu outbreak", "a flu outbreak", "no flu outbreak"),
          V3=("waiting room", "a full waiting room", "an empty waiting room"),
          X=("nurse staffing", "an extra nurse", "no extra nurse"),
          Y=("wait time", "a short wait", "a long wait")),
)

# Collision stories: X and Y share no causal path, so common sense expects no effect.
REAL = tuple(replace(s, sign=0) if s.graph == "collision" else s for s in REAL)
REAL_BY_GRAPH = {g: tuple(s for s in REAL if s.graph == g) for g in dict.fromkeys(s.graph for s in REAL)}
