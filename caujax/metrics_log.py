"""Where a run's metric lines go: <run_dir>/metrics.jsonl always, TensorBoard event files when a writer imports."""
from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import math
import numbers
import pathlib
import warnings

import jax

logger = logging.getLogger(__name__)


def truncate(path: pathlib.Path, start: int) -> None:
    """A resumed run recomputes the steps after its checkpoint: drop the killed run's lines for them."""
    if path.exists():
        kept = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= start]
        path.write_text("".join(l + "\n" for l in kept))


def tensorboard_writer(logdir: pathlib.Path, purge_step: int | None = None):
    """A SummaryWriter on `logdir` from tensorboardX, else from torch.utils.tensorboard; None when neither imports.
    Neither is a dependency of caujax. `purge_step`: TensorBoard hides earlier events at steps >= it (a resume)."""
    candidates = ["tensorboardX"]
    # torch's writer needs the `tensorboard` package; looking for it first spares importing torch (about a second)
    # in runs that have no writer at all.
    if _findable("tensorboard"):
        candidates.append("torch.utils.tensorboard")
    for module in candidates:
        try:
            writer_cls = importlib.import_module(module).SummaryWriter
        except ImportError:
            continue
        except Exception as e:        # a broken optional install must not stop a training run
            warnings.warn(f"{module} is installed but does not import ({type(e).__name__}: {e}); no TensorBoard "
                          f"events from it", stacklevel=2)
            continue
        return writer_cls(str(logdir), purge_step=purge_step)
    logger.info("no TensorBoard writer (install tensorboardX, or tensorboard beside torch): metrics.jsonl only")
    return None


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:                # in sys.modules without a __spec__ (a module made at run time)
        return True


def drop_undefined(line: dict) -> list[str]:
    """Remove, in place, the float values of `line` that are not finite; return the names of the infinite ones.

    NaN is how a metric without a mean reaches the log (an average over an empty set: losses.common.Loss.
    metric_means), and such a metric is absent from that line, not 0. JSON has no NaN or Infinity token (Python's
    json writes bare `NaN`, which jq, JavaScript and pandas' strict readers refuse), so an infinity cannot be
    written either; it is dropped too, and named to the caller to warn about, since it is a measured overflow."""
    bad = [k for k, v in line.items() if isinstance(v, numbers.Real) and not math.isfinite(v)]
    infinite = [k for k in bad if not math.isnan(line[k])]
    for k in bad:
        del line[k]
    return infinite


class MetricsLog:
    """Appends each metric line to metrics.jsonl (flushed at once: the JSONL is the record a killed run keeps) and
    writes each numeric field except `step` as a TensorBoard scalar at that step. A context manager: the file and
    the writer are closed on exit, when training fails too."""

    def __init__(self, run_dir, start: int = 0, *, enabled: bool | None = None):
        run_dir = pathlib.Path(run_dir)
        self.path = run_dir / "metrics.jsonl"
        # On a pod every host computes the same (globally reduced) metrics; only host 0 records them.
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._file, self.writer = None, None
        if not self.enabled:
            return
        truncate(self.path, start)
        self._file = open(self.path, "a")
        try:
            # Lines of steps <= start survive in the JSONL; the events of later steps are hidden likewise.
            self.writer = tensorboard_writer(run_dir / "tensorboard", purge_step=start + 1)
        except BaseException:
            self._file.close()
            raise

    def write(self, line: dict) -> None:
        """Record one line. Metrics without a value (NaN: no element to average over) are removed from `line`
        itself, so the caller's copy matches the file; infinite ones likewise, with a warning (drop_undefined)."""
        infinite = drop_undefined(line)
        if not self.enabled:
            return
        if infinite:
            warnings.warn(f"step {line.get('step')}: {', '.join(infinite)} infinite; left out of metrics.jsonl "
                          f"(JSON has no infinity)", stacklevel=2)
        self._file.write(json.dumps(line, allow_nan=False) + "\n")
        self._file.flush()
        if self.writer is not None:
            for key, value in line.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, line["step"])

    def close(self) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            if self._file is not None:
                self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
