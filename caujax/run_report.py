"""What a finished training run shows its user: <run_dir>/loss.png, and the summary printed at the end."""
from __future__ import annotations

import json
import pathlib

from caujax.resume import saved_steps

# Panels of loss.png, in order, when the metric lines have them: the loss, the learning rate η of that step (the
# `lr` field of metrics.jsonl, written by train._loop), and for online RL the mean reward and strict accuracy.
PANELS = (("loss", "loss"), ("lr", "learning rate"), ("reward_mean", "mean reward"), ("accuracy", "strict accuracy"))


def read_lines(run_dir) -> list[dict]:
    """The lines of <run_dir>/metrics.jsonl ([] when there is none)."""
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def loss_figure(lines: list[dict], title: str):
    """A matplotlib Figure with one panel per PANELS field present in `lines` (metrics.jsonl dicts with "step"):
    steps on integer ticks (a 2-step run shows 1 and 2, not 1.0, 1.2, ...), the learning rate in its own panel.
    Raises ValueError when `lines` is empty."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not lines:
        raise ValueError(f"{title}: no metric lines to plot")
    keys = [(k, label) for k, label in PANELS if any(k in l for l in lines)]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, (key, label) in zip(axes[0], keys):
        points = [(l["step"], l[key]) for l in lines if key in l]
        ax.plot(*zip(*points), marker="." if len(points) < 50 else None, color="C1" if key == "lr" else "C0")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))      # steps are counts
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
            ax.set_ylim(bottom=0)
        ax.set_title(f"{title}: {label}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_loss(run_dir: pathlib.Path) -> pathlib.Path:
    """<run_dir>/loss.png from metrics.jsonl (loss_figure); returns its path."""
    import matplotlib.pyplot as plt

    run_dir = pathlib.Path(run_dir)
    fig = loss_figure(read_lines(run_dir), run_dir.name)
    fig.savefig(run_dir / "loss.png", dpi=100)
    plt.close(fig)
    return run_dir / "loss.png"


def summary(cfg, start: int, lines: list[dict], wall_s: float, export_path: pathlib.Path | None) -> str:
    """The closing lines of a run: the steps this call trained (from `start`), the final loss (and RL reward), the
    wall time, and where the run directory, checkpoints, plot and export are. `lines`: the metric lines this call
    wrote; `export_path`: None when nothing was exported."""
    run_dir = pathlib.Path(cfg.run_dir).absolute()
    last = (lines or read_lines(run_dir) or [{}])[-1]
    trained = cfg.steps - start
    steps = (f"steps {start + 1}..{cfg.steps} of {cfg.steps}" + (f" (resumed at step {start})" if start else "")
             if trained > 0 else f"no steps to train (already at step {start} of {cfg.steps})")
    final = f"{last['loss']:.6g} at step {last['step']}" if "loss" in last else "(no metric line)"
    if "reward_mean" in last:
        final += f"; mean reward {last['reward_mean']:.4g}, strict accuracy {last.get('accuracy', float('nan')):.3g}"
    saved = saved_steps(run_dir)
    rows = [("final loss", final),
            ("run directory", f"{run_dir} (config.json, metrics.jsonl)"),
            ("checkpoints", f"{run_dir / 'checkpoints'}: " + (", ".join(f"step {s}" for s in saved) or "none")),
            ("plot", str(run_dir / "loss.png") if (run_dir / "loss.png").exists() else "none"),
            ("export", f"{export_path.absolute()}" if export_path is not None else "none (export=false)")]
    if (run_dir / "damaged_checkpoints").is_dir():
        rows.append(("set aside", f"{run_dir / 'damaged_checkpoints'} (damaged checkpoints set aside by this or an "
                                  "earlier resume, kept for inspection)"))
    body = "\n".join(f"  {name:<14} {value}" for name, value in rows)
    return f"caujax.train: {cfg.method} done: {steps} in {wall_s:.1f} s (wall time, start-up included)\n{body}"
