"""The demo's numbers: per-stage scores of the held-out replies, paired 95% confidence intervals, the charts and
report.md."""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import resource

from caujax import scoring
from caujax.data.baselines import always_zero
from caujax.data.items import Item

EVALS = ("eval_base", "eval_sft", "eval_grpo")
LABELS = {"eval_base": "before training", "eval_sft": "after SFT", "eval_grpo": "after GRPO"}


def stage_scores(items: list[Item], generations: dict[str, dict]) -> dict:
    """Rates over the items (one greedy reply each) and the per-item 0/1 vectors the paired intervals need:
    strict and paper-rule correctness, format validity (scoring.well_formed), and the always-0 baseline's strict
    correctness on the same items."""
    replies = [generations[it.id]["all_generated_answers"][0] for it in items]
    # A chat template that opened <think> in the prompt: a reply without </think> has no final answer.
    opened = [bool(generations[it.id].get("prompt_opened_thinking", False)) for it in items]
    per_item = {"strict": [int(scoring.score(r, it.answer, "strict", opened=o))
                           for r, it, o in zip(replies, items, opened)],
                "paper": [int(scoring.score(r, it.answer, "paper")) for r, it in zip(replies, items)],
                "format_valid": [int(scoring.well_formed(r, it.answer, opened=o))
                                 for r, it, o in zip(replies, items, opened)],
                "always0": [int(scoring.score(always_zero(it), it.answer, "strict")) for it in items]}
    out = {name: sum(v) / len(v) for name, v in per_item.items()}
    kinds = [item_kind(it) for it in items]
    by_kind = {k: {"n": kinds.count(k), "strict": sum(s for s, kk in zip(per_item["strict"], kinds) if kk == k)
                   / kinds.count(k)} for k in sorted(set(kinds))}
    return out | {"n": len(items), "per_item": per_item, "by_kind": by_kind}


def item_kind(item: Item) -> str:
    """"non-cause" when the worked solution is the one-step non-cause rule (the treatment is not a cause, or the
    edge / indirect path is absent: answer 0, No; every other Reason has 2 or 7 steps), else "cause": which of the
    two skills an item tests, reading the graph or computing the effect."""
    return "non-cause" if item.reason and len(item.reason) == 1 else "cause"


def paired_difference(a: list[int], b: list[int]) -> tuple[float, float, float]:
    """(mean of a - b, low, high): the 95% normal interval of a paired difference of rates (the same items scored
    twice): d_i = a_i - b_i, mean ± 1.96 · sd(d) / sqrt(n)."""
    n = len(a)
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def comparisons(records: dict) -> list[dict]:
    """Strict accuracy on the held-out set: each trained stage against the untrained model and against always-0."""
    out = []
    base = records["eval_base"]["heldout"]["per_item"]
    for stage in ("eval_sft", "eval_grpo"):
        ours = records[stage]["heldout"]["per_item"]
        for against, vector in (("before training", base["strict"]), ("always-0", base["always0"])):
            mean, low, high = paired_difference(ours["strict"], vector)
            out.append({"stage": LABELS[stage], "against": against, "difference": mean, "low": low, "high": high,
                        "clear": low > 0})
    return out


def _plot(root: pathlib.Path, records: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = np.arange(len(EVALS))
    for i, (key, label) in enumerate((("format_valid", "format-valid"), ("strict", "strict accuracy"))):
        ax.bar(x + (i - 0.5) * 0.38, [100 * records[s]["heldout"][key] for s in EVALS], 0.38, label=label)
    ax.axhline(100 * records["eval_base"]["heldout"]["always0"], color="k", ls="--", lw=1, label="always-0 (strict)")
    ax.set_xticks(x, [LABELS[s] for s in EVALS])
    ax.set_ylabel("% of held-out items")
    ax.set_ylim(0, 100)
    ax.set_title(f"held-out generated problems (n={records['eval_base']['heldout']['n']}, greedy)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(root / "accuracy.png", dpi=100)
    plt.close(fig)

    curves = [("sft", "loss"), ("grpo", "reward_mean"), ("grpo", "accuracy")]
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.3))
    for ax, (run, key) in zip(axes, curves):
        lines = [json.loads(l) for l in (root / run / "metrics.jsonl").read_text().splitlines() if l.strip()]
        points = [(l["step"], l[key]) for l in lines if l.get(key) is not None]     # absent: nothing to average
        ax.plot(*zip(*points) if points else ([], []), marker="." if len(points) < 60 else None)
        ax.set_title(f"{run}: {key}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(root / "curves.png", dpi=100)
    plt.close(fig)


def write_report(root: pathlib.Path, cfg, records: dict) -> dict:
    """accuracy.png, curves.png and report.md under root; returns the headline numbers."""
    _plot(root, records)
    rows = ["| stage | format-valid | strict accuracy | paper rule | always-0 (strict) |", "|---|---|---|---|---|"]
    for stage in EVALS:
        h = records[stage]["heldout"]
        rows.append(f"| {LABELS[stage]} | {h['format_valid']:.1%} | {h['strict']:.1%} | {h['paper']:.1%} | "
                    f"{h['always0']:.1%} |")
    # A demo resumed across versions may hold stage records written before by_kind existed: "-" for those.
    by_kind = {s: records[s]["heldout"].get("by_kind") for s in EVALS}
    counts = {k: v["n"] for kinds_of in by_kind.values() if kinds_of for k, v in kinds_of.items()}
    kinds = sorted(counts)
    kind_rows = ["| stage | " + " | ".join(f"{k} items (n={counts[k]})" for k in kinds) + " |",
                 "|---|" + "---|" * len(kinds)]
    kind_rows += [f"| {LABELS[s]} | " + " | ".join(f"{by_kind[s][k]['strict']:.1%}" if by_kind[s] and k in by_kind[s]
                                                  else "-" for k in kinds) + " |" for s in EVALS]
    caugym = [f"| {LABELS[s]} | {records[s]['caugym_base']['format_valid']:.1%} | "
              f"{records[s]['caugym_base']['strict']:.1%} | {records[s]['caugym_base']['paper']:.1%} | "
              f"{records[s]['caugym_base']['always0']:.1%} |" for s in EVALS if "caugym_base" in records[s]]
    diffs = comparisons(records)
    diff_rows = ["| stage | against | difference in strict accuracy | 95% interval | above it? |",
                 "|---|---|---|---|---|"]
    diff_rows += [f"| {d['stage']} | {d['against']} | {d['difference']:+.1%} | [{d['low']:+.1%}, "
                  f"{d['high']:+.1%}] | {'yes' if d['clear'] else 'no'} |" for d in diffs]
    times = "\n".join(f"| {name} | {rec['seconds']:.0f} s |" for name, rec in records.items())
    samples = _rollout_samples(root / "grpo" / "rollouts.jsonl")
    # Each stage recorded its process's peak so far; a resumed demo ran in several processes: take the largest.
    peak = max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20] +
               [rec.get("peak_rss_gb", 0.0) for rec in records.values()])
    settings = json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("sft", "grpo")},
                          default=str, indent=1)
    text = f"""# caujax demo report

Held-out set: {records['eval_base']['heldout']['n']} generated problems never trained on (data/heldout.json), one
greedy reply each, scored by the strict rule (final answer within 0.0005, scoring.py) and the paper's rule.

{chr(10).join(rows)}

Strict accuracy by what an item tests: non-cause items need only the graph (the treatment is not a cause: 0, No);
cause items need the given probabilities read into the formula and the arithmetic done:

{chr(10).join(kind_rows)}
""" + (f"""
CauGym `base`, first {records['eval_base']['caugym_base']['n']} items:

{chr(10).join(rows[:2] + caugym)}
""" if caugym else "") + f"""
Paired differences in strict accuracy on the held-out set (the same items; normal 95% interval):

{chr(10).join(diff_rows)}

Wall time per stage (peak resident memory: {peak:.2f} GiB):

| stage | time |
|---|---|
{times}

Charts: accuracy.png (before/after), curves.png (SFT loss, GRPO reward and accuracy). Runs: sft/ and grpo/
(metrics.jsonl, loss.png, checkpoints/), the trained model: grpo/hf (a Hugging Face directory, adapters merged).

Settings (the SFT and GRPO run configs are sft/config.json and grpo/config.json):

```
{settings}
```

Rollout samples (grpo/rollouts.jsonl, last rollout logged):

{samples}
"""
    (root / "report.md").write_text(text)
    print("\n" + "\n".join(rows) + "\n\n" + "\n".join(diff_rows), flush=True)
    return {"heldout": {s: {k: records[s]["heldout"][k] for k in ("format_valid", "strict", "paper", "always0")}
                        for s in EVALS}, "comparisons": diffs, "peak_rss_gb": round(peak, 2)}


def _rollout_samples(path: pathlib.Path, k: int = 3) -> str:
    if not path.exists():
        return "(no rollout table: grpo.rollout.log_every is 0)"
    lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    last = [l for l in lines if l["rollout"] == lines[-1]["rollout"]][:k]
    return "\n\n".join(f"- reward {l['reward']:.2f}, answer {l['answer']}:\n\n```\n{l['completion'][:800]}\n```"
                       for l in last)
