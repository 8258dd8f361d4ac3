"""Scores of an evaluation: per-type accuracy under both rules, the baselines beside them, a table and a PNG."""
from __future__ import annotations

import json
import pathlib

from caujax import scoring
from caujax.causal.answer import TYPES
from caujax.data.baselines import baseline_table
from caujax.data.items import Item


def scan_generations(path: pathlib.Path) -> tuple[dict[str, dict], int]:
    """(id -> record, bytes of complete lines) of a generations JSONL, without touching the file. A last line cut
    short by a kill is left out: every complete line is a finished item. Raises ValueError for a bad line
    elsewhere."""
    records: dict[str, dict] = {}
    if not path.exists():
        return records, 0
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
    return records, good


def read_generations(path: pathlib.Path) -> dict[str, dict]:
    """id -> record from a generations JSONL; a torn last line is dropped from the file (and later rewritten)."""
    records, good = scan_generations(path)
    if path.exists() and good != path.stat().st_size:     # cut the torn tail so appends start on a clean line
        with open(path, "rb+") as f:
            f.truncate(good)
    return records


def sample_accuracy(items: list[Item], generations: dict[str, dict], rule: scoring.Rule) -> dict[str, float]:
    """Per type: correct samples / samples (the paper's avg@k); "all" is the micro average over every sample.

    A record's `prompt_opened_thinking` (the chat template opened <think>) reaches the strict rule, so a reply cut
    before `</think>` has no answer; records written before that field existed read as False."""
    right: dict[str, int] = {}
    count: dict[str, int] = {}
    for item in items:
        record = generations[item.id]
        opened = bool(record.get("prompt_opened_thinking", False))
        for response in record["all_generated_answers"]:
            ok = scoring.score(response, item.answer, rule, opened=opened)
            for key in (item.type, "all"):
                right[key] = right.get(key, 0) + ok
                count[key] = count.get(key, 0) + 1
    return {key: right[key] / count[key] for key in (*TYPES, "all") if key in count}


def set_scores(items: list[Item], generations: dict[str, dict], label: str = "model") -> dict[str, dict[str, float]]:
    """{row label: {type: accuracy}}: the model under both rules, then the baselines and the symbolic solver."""
    rows = {f"{label} ({rule})": sample_accuracy(items, generations, rule) for rule in scoring.RULES}
    for (name, rule), accs in baseline_table(items).items():
        rows[f"{name} ({rule})"] = accs
    return rows


def format_scores(title: str, rows: dict[str, dict[str, float]], columns: list[str] | None = None) -> str:
    """A Markdown table, one row per label; columns default to the task types any row scores, then "all"."""
    columns = columns or [t for t in (*TYPES, "all") if any(t in r for r in rows.values())]
    width = max(len(k) for k in rows) + 2
    lines = [title, "| " + " | ".join(["", *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, accs in rows.items():
        cells = [f"{100 * accs[c]:.1f}" if c in accs else "-" for c in columns]
        lines.append(f"| {name:<{width}}| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw_scores(title: str, rows: dict[str, dict[str, float]], columns: list[str] | None = None,
                shown: list[str] | None = None):
    """Grouped bars per type: the model under both rules against the solver and always-0 (paper rule); a matplotlib
    Figure. A score of 0 is drawn as a "0" and a tick on the axis, so that it cannot be read as a missing bar; a
    type a row does not score has no bar and no label. The legend sits right of the axes, never over a bar.
    columns and shown (row labels) replace the CauGym defaults (the existing benchmarks pass their own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = shown or [k for k in rows if not k.startswith(("always-LACK", "solver (strict)", "always-0 (strict)"))]
    columns = columns or [t for t in (*TYPES, "all") if any(t in rows[k] for k in shown)]
    x = np.arange(len(columns))
    width = 0.8 / len(shown)
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 5, 4))
    for i, name in enumerate(shown):
        heights = [100 * rows[name][c] if c in rows[name] else np.nan for c in columns]
        bars = ax.bar(x + i * width, heights, width, label=name)
        color = bars.patches[0].get_facecolor() if bars.patches else None
        for xpos, h in zip(x + i * width, heights):
            if h == 0:
                ax.plot([xpos - width / 2, xpos + width / 2], [0, 0], color=color, linewidth=3, clip_on=False)
                ax.annotate("0", (xpos, 0), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                            fontsize=7, color=color)
    ax.set_xticks(x + 0.4 - width / 2, columns)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def plot_scores(title: str, rows: dict[str, dict[str, float]], path: pathlib.Path, **kwargs) -> None:
    """draw_scores (kwargs: its columns and shown) saved as a PNG at `path`."""
    import matplotlib.pyplot as plt

    fig = draw_scores(title, rows, **kwargs)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
