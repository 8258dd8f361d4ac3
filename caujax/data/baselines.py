"""Reference accuracies to print beside every table: always-0, always-LACK_CONDITION, and the symbolic solver."""
from collections.abc import Callable, Iterable

from tqdm import tqdm

from caujax import scoring
from caujax.causal import solve
from caujax.causal.answer import EFFECT_TYPES, LACK_CONDITION, TYPES
from caujax.data.items import Item


def always_zero(item: Item) -> str:
    """The JSON a model would print if it always answered 0 (and No), in the item's own answer format."""
    return '{"ANSWER": "No", "PROB": "0"}' if item.type in EFFECT_TYPES else '{"PROB": "0"}'


def always_lack(item: Item) -> str:
    return LACK_CONDITION


def solver(item: Item) -> str:
    """What the symbolic solver prints: its answer JSON, LACK_CONDITION, or nothing when it cannot parse."""
    answer = solve(item.problem)
    return answer.to_json() if answer.status in ("ok", "lack_condition") else ""


BASELINES: dict[str, Callable[[Item], str]] = {"always-0": always_zero, "always-LACK": always_lack, "solver": solver}


def accuracy_by_type(items: Iterable[Item], responses: Iterable[str], rule: scoring.Rule) -> dict[str, float]:
    """Per-type accuracy plus "all", the micro average (the paper's "All Accuracy")."""
    right: dict[str, int] = {}
    count: dict[str, int] = {}
    for item, response in zip(items, responses, strict=True):
        ok = scoring.score(response, item.answer, rule)
        for key in (item.type, "all"):
            right[key] = right.get(key, 0) + ok
            count[key] = count.get(key, 0) + 1
    return {key: right[key] / count[key] for key in [*[t for t in TYPES if t in count], "all"] if key in count}


def baseline_table(items: list[Item], names: Iterable[str] = tuple(BASELINES), progress: bool = False
                   ) -> dict[tuple[str, str], dict[str, float]]:
    """{(baseline, rule): {type: accuracy}} for one set."""
    table = {}
    for name in names:
        it = tqdm(items, desc=name, leave=False, disable=not progress)
        responses = [BASELINES[name](item) for item in it]
        for rule in scoring.RULES:
            table[(name, rule)] = accuracy_by_type(items, responses, rule)
    return table


def format_table(title: str, table: dict[tuple[str, str], dict[str, float]]) -> str:
    columns = [t for t in (*TYPES, "all") if any(t in row for row in table.values())]
    lines = [title, f"{'baseline':<12} {'rule':<7}" + "".join(f"{c:>7}" for c in columns)]
    for (name, rule), row in table.items():
        lines.append(f"{name:<12} {rule:<7}" + "".join(f"{100 * row[c]:>6.1f}%" if c in row else f"{'-':>7}"
                                                        for c in columns))
    return "\n".join(lines)


def summary(items: list[Item], names: Iterable[str] = tuple(BASELINES)) -> dict:
    """One set's numbers for `python -m caujax.data baselines --json`: n, the solver's coverage (answered or
    LACK_CONDITION / all) and accuracy (strict rule, over the answered items), and each baseline's overall accuracy
    under both rules (fractions)."""
    out: dict = {"n": len(items)}
    if "solver" in names:
        replies = [solver(item) for item in items]
        answered = [(item, r) for item, r in zip(items, replies) if r]
        out["solver_coverage"] = len(answered) / len(items) if items else 0.0
        out["solver_accuracy"] = (sum(scoring.score(r, item.answer, "strict") for item, r in answered) / len(answered)
                                  if answered else 0.0)
    for (name, rule), row in baseline_table(items, names).items():
        out[f"{name} ({rule})"] = row["all"]
    return out
