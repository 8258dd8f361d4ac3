"""Scores of an evaluation: per-type accuracy under both rules, the baselines beside them, a table and a PNG."""
from __future__ import annotations

import json
import pathlib

from caujax import scoring
from caujax.causal.answer import TYPES
from caujax.data.baselines import accuracy_by_type, baseline_table
from caujax.data.items import Item


def read_generations(path: pathlib.Path) -> dict[str, dict]:
    """id -> record from a generations JSONL. A last line cut short by a kill is dropped (and later rewritten):
    every complete line is a finished item."""
    records: dict[str, dict] = {}
    if not path.exists():
        return records
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    good = 0
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise ValueError(f"{path}: line {i + 1} is not JSON; only the last line may be incomplete") from None
            break
        if not line.endswith("\n"):
            break
        records[str(record["id"])] = record
        good += len(line.encode("utf-8"))
    if good != path.stat().st_size:          # cut the torn tail so appends start on a clean line
        with open(path, "rb+") as f:
            f.truncate(good)
    return records


def sample_accuracy(items: list[Item], generations: dict[str, dict], rule: scoring.Rule) -> dict[str, float]:
    """Per type: correct samples / samples (the paper's avg@k); "all" is the micro average over every sample."""
    pairs = [(item, r) for item in items for r in generations[item.id]["all_generated_answers"]]
    return accuracy_by_type([item for item, _ in pairs], [r for _, r in pairs], rule)


def set_scores(items: list[Item], generations: dict[str, dict], label: str = "model") -> dict[str, dict[str, float]]:
    """{row label: {type: accuracy}}: the model under both rules, then the baselines and the symbolic solver."""
    rows = {f"{label} ({rule})": sample_accuracy(items, generations, rule) for rule in scoring.RULES}
    for (name, rule), accs in baseline_table(items).items():
        rows[f"{name} ({rule})"] = accs
    return rows


def format_scores(title: str, rows: dict[str, dict[str, float]]) -> str:
    columns = [t for t in (*TYPES, "all") if any(t in r for r in rows.values())]
    width = max(len(k) for k in rows) + 2
    lines = [title, "| " + " | ".join(["", *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, accs in rows.items():
        cells = [f"{100 * accs[c]:.1f}" if c in accs else "-" for c in columns]
        lines.append(f"| {name:<{width}}| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_scores(title: str, rows: dict[str, dict[str, float]], path: pathlib.Path) -> None:
    """Grouped bars per type: the model under both rules against the solver and always-0 (paper rule)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [k for k in rows if not k.startswith(("always-LACK", "solver (strict)", "always-0 (strict)"))]
    columns = [t for t in (*TYPES, "all") if any(t in rows[k] for k in shown)]
    x = np.arange(len(columns))
    width = 0.8 / len(shown)
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 3, 4))
    for i, name in enumerate(shown):
        ax.bar(x + i * width, [100 * rows[name].get(c, 0.0) for c in columns], width, label=name)
    ax.set_xticks(x + 0.4 - width / 2, columns)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
