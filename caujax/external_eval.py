"""The existing benchmarks in `python -m caujax.eval`: CLadder and CausalProbe items, prompts, scores and tables.

caujax/eval.py samples and resumes them like the CauGym sets; this module says what each suite reads, how its
prompt is built (each benchmark's official prompt under the model's chat template), and how its samples are
scored: every rule of caujax.external_scoring, per group (CLadder: rung, query type and story class; CausalProbe:
its subset), beside the trivial baselines of the data's own README (always-yes and the majority class for CLadder,
the majority choice and uniform guessing for CausalProbe) and, for CLadder, the symbolic solver.
"""
from __future__ import annotations

import collections
import itertools
import pathlib

from caujax import external_scoring as xs
from caujax.data import causalprobe, cladder
from caujax.data.items import data_root

SUITES = ("cladder", "causalprobe")
ENV = {"cladder": "CLADDER_DIR", "causalprobe": "CAUSALPROBE_DIR"}


def suite_items(suite: str, sets: list[str] | None, data_dir: str | None) -> tuple[dict[str, list], pathlib.Path]:
    """(set name -> items, the file or directory read). CLadder is one set, "cladder", read from --data-dir (a file
    or a directory), else $CLADDER_DIR, else shared/external/cladder or data/cache/cladder; CausalProbe's sets are
    causalprobe_E / _H / _M (default E and H, the paper's), from CausalProbe-<S>.json likewise.
    Raises FileNotFoundError (where it looked), RowError for a bad row and ValueError for an unknown set."""
    if suite == "cladder":
        if sets and sets != ["cladder"]:
            raise ValueError(f"--suite cladder has one set, 'cladder'; got --sets {','.join(sets)}")
        if data_dir is not None and pathlib.Path(data_dir).is_file():
            root = pathlib.Path(data_dir).resolve()
        else:
            root = data_root(data_dir, ENV[suite], "CLadder", shared="external/cladder")
        path = cladder.resolve(root)
        return {"cladder": cladder.load_cladder(path)}, path.resolve()
    subsets = [s.removeprefix("causalprobe_") for s in sets] if sets else list(causalprobe.DEFAULT_SUBSETS)
    unknown = sorted(set(subsets) - set(causalprobe.SUBSETS))
    if unknown:
        raise ValueError(f"unknown CausalProbe subset(s) {unknown}; choose from "
                         f"{', '.join(causalprobe.SUBSETS)}")
    root = data_root(data_dir, ENV[suite], "CausalProbe", shared="external/causalprobe")
    return {f"causalprobe_{s}": causalprobe.load_causalprobe(s, root) for s in subsets}, root


def item_prompt(tokenizer, item) -> str:
    """The official prompt of the item's benchmark under the tokenizer's chat template, generation prompt appended.
    CLadder's system message is folded into the user turn (a blank line between) for templates that reject a
    system role (Gemma 2 and others raise on one). Raises ValueError for a tokenizer without a chat template."""
    if getattr(tokenizer, "chat_template", None) is None:
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ValueError(f"tokenizer {name!r} has no chat template (use the instruct/chat variant of the model)")
    messages = item.messages()
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:                                   # jinja2 TemplateError: "System role not supported"
        if messages[0]["role"] != "system":
            raise
        folded = [{"role": "user", "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}]
        return tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=True)


def _groups(item) -> list[str]:
    """The table columns an item counts in, "all" last."""
    if item.benchmark == "cladder":
        groups = [f"rung {item.rung}", item.query_type]
        if item.question_property:
            groups.append(item.question_property)
        return [*groups, "all"]
    return ["all"]


def _columns(items) -> list[str]:
    order = ([f"rung {r}" for r in (1, 2, 3)] + list(cladder.QUERY_TYPES)
             + ["easy", "hard", "commonsense", "anticommonsense", "nonsense"])
    present = {g for it in items for g in _groups(it)}
    return [g for g in order if g in present] + sorted(present - set(order) - {"all"}) + ["all"]


def prediction(item, rule: str, reply: str, opened: bool = False):
    """What `rule` reads from one reply to `item` (external_scoring.predict)."""
    return xs.predict(item.benchmark, rule, reply, multi=item.multi, opened=opened)


def _accuracy(items, outcomes) -> dict[str, float]:
    """{group: mean of outcomes} where outcomes[i] is a list of 0/1 (or expected values) for items[i]."""
    total, count = collections.Counter(), collections.Counter()
    for item, values in zip(items, outcomes, strict=True):
        for group in _groups(item):
            total[group] += sum(values)
            count[group] += len(values)
    return {g: total[g] / count[g] for g in _columns(items) if count[g]}


def model_rows(items, generations: dict[str, dict], label: str = "model") -> dict[str, dict[str, float]]:
    """Sample accuracy (right samples / samples) per group under each rule; CausalProbe-M has no official row.
    "<label> (official, valid)" is CausalProbe's second official number: accuracy over replies holding a digit."""
    rows = {}
    for rule in xs.RULES:
        if rule == "official" and any(it.multi for it in items):
            continue
        outcomes, valid = [], []
        for item in items:
            record = generations[item.id]
            opened = bool(record.get("prompt_opened_thinking", False))
            preds = [prediction(item, rule, r, opened) for r in record["all_generated_answers"]]
            outcomes.append([p is not None and p == item.gold for p in preds])
            valid.append([p == item.gold for p in preds if p is not None])
        rows[f"{label} ({rule})"] = _accuracy(items, outcomes)
        if rule == "official" and items[0].benchmark == "causalprobe":
            kept = [(it, v) for it, v in zip(items, valid) if v]
            rows[f"{label} (official, valid)"] = _accuracy(*zip(*kept)) if kept else {}
    return rows


def baseline_rows(items, population=None) -> dict[str, dict[str, float]]:
    """Constant answers and, for CLadder, the symbolic solver (an abstention counts as wrong), per group, on `items`.
    The majority answer is the whole set's (`population`, default `items`): with --limit a sample's own majority
    would be chosen after seeing its golds."""
    golds = [it.gold for it in items]
    majority = collections.Counter(it.gold for it in population or items).most_common(1)[0][0]   # ties: first seen
    name = majority if isinstance(majority, str) else (",".join(map(str, majority)) if isinstance(majority, tuple)
                                                       else str(majority))
    rows = {}
    if items[0].benchmark == "cladder":
        rows["always-yes"] = _accuracy(items, [[g == "yes"] for g in golds])
        rows[f"majority (always-{name})"] = _accuracy(items, [[g == majority] for g in golds])
        solved = solver_answers(items)
        rows["solver"] = _accuracy(items, [[s is not None and s == g] for s, g in zip(solved, golds)])
        return rows
    rows[f"majority (always-{name})"] = _accuracy(items, [[g == majority] for g in golds])
    if any(it.multi for it in items):            # one of the 15 non-empty subsets of {1, 2, 3, 4}
        subsets = {tuple(c) for k in range(1, 5) for c in itertools.combinations(range(1, 5), k)}
        rows["uniform random"] = _accuracy(items, [[(g in subsets) / len(subsets)] for g in golds])
    else:                                             # expected accuracy of a uniform guess over the 4 choices
        rows["uniform random"] = _accuracy(items, [[(g in (1, 2, 3, 4)) / 4] for g in golds])
    return rows


def solver_answers(items) -> list[str | None]:
    """The CLadder solver's yes/no per item, None where it abstains."""
    from caujax.causal.cladder_solve import solve_cladder

    out = []
    for item in items:
        answer = solve_cladder(item.problem)
        out.append(answer.answer if answer.status == "ok" else None)
    return out


def set_scores(items, generations: dict[str, dict], population=None) -> dict[str, dict[str, float]]:
    """{row label: {group: accuracy}}: the model under each rule, then the baselines (population: the whole set
    the items were drawn from, for the majority answer)."""
    return {**model_rows(items, generations), **baseline_rows(items, population)}


def table_sections(items) -> list[tuple[str, list[str]]]:
    """(title suffix, columns) of the printed tables: CLadder by rung, by query type and by story class."""
    columns = _columns(items)
    if items[0].benchmark == "causalprobe":
        return [("", columns)]
    rungs = [c for c in columns if c.startswith("rung ")]
    kinds = [c for c in columns if c in cladder.QUERY_TYPES]
    rest = [c for c in columns if c not in rungs and c not in kinds and c != "all"]
    return [(" by rung", [*rungs, "all"]), (" by query type", [*kinds, "all"]),
            *([(" by story class", [*rest, "all"])] if rest else [])]


def plot_options(items, rows: dict[str, dict[str, float]]) -> dict:
    """eval_report.plot_scores arguments: every column but the story classes (CLadder's chart stays readable),
    the model rows and the baselines that are not a duplicate of another (always-yes is drawn, majority too)."""
    columns = [c for c in _columns(items) if c not in ("easy", "hard", "commonsense", "anticommonsense", "nonsense")]
    return {"columns": columns, "shown": [k for k in rows if "valid" not in k]}


def baseline_summary(items) -> dict:
    """`python -m caujax.data baselines --json` for a CLadder file: n, the solver's coverage (answered / all) and
    accuracy (right / answered), always-yes and the majority class (fractions), and the majority label."""
    golds = [it.answer for it in items]
    solved = solver_answers(items)
    answered = [(s, g) for s, g in zip(solved, golds) if s is not None]
    majority = collections.Counter(golds).most_common(1)[0][0] if golds else "no"
    return {"n": len(items), "solver_coverage": len(answered) / len(items) if items else 0.0,
            "solver_accuracy": sum(s == g for s, g in answered) / len(answered) if answered else 0.0,
            "always-yes": sum(g == "yes" for g in golds) / len(golds) if golds else 0.0,
            "majority": sum(g == majority for g in golds) / len(golds) if golds else 0.0, "majority_label": majority}
