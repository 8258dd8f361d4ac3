"""Reward functions for online RL: the built-ins, loading a user's reward file, the weighted sum, DAPO's overlong term.

A reward function is a plain function `(prompts, completions, items) -> sequence of R floats`, one per completion;
`items[i]` is the problem of completion i and `items[i].answer` its ground-truth string. As in TRL, an entry may be
None for "does not apply to this row"; it becomes NaN here. Rewards are summed with `rollout.reward_weights`
(1.0 each by default; the GRPO/PPO presets pass (1.0, 0.1) for ("causal", "format"), which ranks answers as
`caujax.scoring.reward` does: correct 1.1, wrong but well formed 0.1, else 0).

Per-row facts of the sampler that the texts alone do not show reach a function only when it asks for them by a
keyword parameter of that name (or takes **kwargs, as TRL reward functions do): `opened[i]`, the chat template
opened `<think>` in prompt i so completion i starts inside its thinking (scoring.prompt_opens_thinking), and
`truncated[i]`, completion i was cut at max_completion_length rather than ended by EOS.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.machinery
import importlib.util
import inspect
import math
import pathlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from caujax import scoring
from caujax.data.items import Item
from caujax.losses.params import RolloutParams

RewardFn = Callable[[list[str], list[str], list[Item]], Sequence[Any]]
OVERLONG = "overlong"            # the key of the overlong term in `terms`; no reward function may use the name

_WHITESPACE = re.compile(r"\s+")
_PROB_AS_WRITTEN = re.compile(r'"PROB"\s*:\s*"?\s*([^"\s,}]+)')


class RewardError(ValueError):
    """A reward function that cannot be loaded, resolved or run, or that returned something that is not R floats."""


# ---- built-ins: per-text rules on top of caujax.scoring; none of them raises on any completion text ----------------
def causal_reward(prompts: list[str], completions: list[str], items: list[Item], *,
                  opened: Sequence[bool] | None = None) -> list[float]:
    """1.0 when the completion is correct under the strict rule (`scoring.score(..., "strict")`: the last answer JSON
    after `</think>` within 0.0005 of the truth; LACK_CONDITION items need LACK_CONDITION and no numeric PROB), else
    0.0; also 0.0 when its thinking is open at the end (cut mid-thought; `opened`: see the module docstring)."""
    opened = [False] * len(completions) if opened is None else opened
    return [float(scoring.score(text, item.answer, "strict", opened=bool(o)))
            for text, item, o in zip(completions, items, opened, strict=True)]


def format_reward(prompts: list[str], completions: list[str], items: list[Item], *,
                  opened: Sequence[bool] | None = None) -> list[float]:
    """1.0 when the final answer is well formed for the item (`scoring.well_formed`: LACK_CONDITION, a finite PROB,
    or Yes/No for Yes/No items), right or wrong, else 0.0 (and 0.0 with no final answer: thinking open at the end).
    Presets weight it 0.1."""
    opened = [False] * len(completions) if opened is None else opened
    return [float(scoring.well_formed(text, item.answer, opened=bool(o)))
            for text, item, o in zip(completions, items, opened, strict=True)]


@functools.lru_cache(maxsize=65536)
def copy_target(answer: str) -> str | None:
    """The ground-truth PROB exactly as written in the answer string ('{"PROB": "0.239"}' -> "0.239", the last one
    when several), or None when there is none (LACK_CONDITION, Yes/No-only items) or it is not a number."""
    found = _PROB_AS_WRITTEN.findall(answer)
    if not found:
        return None
    try:
        float(found[-1])
    except ValueError:
        return None
    return found[-1]


def copy_score(text: str, target: str) -> float:
    """`difflib.SequenceMatcher(None, head, target).ratio()` = 2·M / (len(head) + len(target)), M the matched
    characters, with head = `text` without whitespace, cut to len(target) + 2 characters.

    In [0, 1]; exactly 1.0 iff the whitespace-free text equals `target`. A text that is `target` followed by k >= 1
    more non-whitespace characters scores 2n / (2n + min(k, 2)), n = len(target): the cut keeps the cost of
    rambling on bounded and the same for every long tail."""
    if not isinstance(text, str):
        return 0.0
    head = _WHITESPACE.sub("", text)[:len(target) + 2]
    return difflib.SequenceMatcher(None, head, target).ratio()


def copy_reward(prompts: list[str], completions: list[str], items: list[Item]) -> list[float]:
    """A dense TOY reward for CPU learning tests, not a causal reward: how closely the completion starts with the
    item's ground-truth PROB string (`copy_score`). NaN (does not apply) for items without a PROB."""
    targets = [copy_target(item.answer) for item in items]
    return [math.nan if t is None else copy_score(text, t) for text, t in zip(completions, targets)]


BUILTIN: dict[str, RewardFn] = {"causal": causal_reward, "format": format_reward, "copy": copy_reward}


# ---- user reward files --------------------------------------------------------------------------------------------
def load_reward_file(path: str | pathlib.Path) -> dict[str, RewardFn]:
    """Import a Python file and return its public top-level functions by name: those defined in the file itself
    (`def` or a lambda bound to a name), not starting with `_`; imported functions such as `from math import sqrt`
    are left out. The module is not registered in sys.modules."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"rollout.reward_file={str(path)!r} does not exist or is not a file")
    name = f"caujax_reward_file_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}"
    # An explicit loader, so a file whose suffix is not .py loads too (spec_from_file_location returns None then).
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:       # SyntaxError, ImportError, whatever its top level raises: all name the file
        raise RewardError(f"rollout.reward_file {str(path)!r} failed to import: {type(e).__name__}: {e}") from e
    return {k: v for k, v in vars(module).items()
            if not k.startswith("_") and inspect.isfunction(v) and v.__module__ == name}


# ---- DAPO overlong shaping ----------------------------------------------------------------------------------------
def overlong_penalty(lengths_R, max_completion_length: int, buffer: int, factor: float = 1.0) -> np.ndarray:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), times `factor`; float64 [R].

    With L_max = max_completion_length and L_b = buffer, for a completion of L tokens:
        0                          if L <= L_max - L_b
        (L_max - L_b - L) / L_b    if L_max - L_b < L <= L_max   (from just below 0 down to -1)
        -1                         if L > L_max
    A completion of exactly L_max tokens is inside the buffer and gets (L_max - L_b - L_max) / L_b = -1, so a
    sampler capped at L_max hands every truncated completion the full penalty."""
    if not 1 <= buffer <= max_completion_length:
        raise ValueError(f"overlong buffer={buffer} must be in [1, max_completion_length={max_completion_length}]")
    length_R = np.asarray(lengths_R, dtype=np.float64)
    start = max_completion_length - buffer
    inside_R = (start - length_R) / buffer
    penalty_R = np.where(length_R <= start, 0.0, np.where(length_R <= max_completion_length, inside_R, -1.0))
    return factor * penalty_R


# ---- the weighted set -----------------------------------------------------------------------------------------------
def _asked_for(fn: RewardFn, extras: dict[str, list[bool]]) -> dict[str, list[bool]]:
    """The per-row extras `fn` declares by name (all of them for a **kwargs function): a plain 3-argument
    function is called as before."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):          # a builtin or C callable without a signature: the 3 arguments only
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(extras)
    return {k: v for k, v in extras.items() if k in params}


def _first_row(prompts, completions, items) -> str:
    if not completions:
        return "empty batch"
    item_id = getattr(items[0], "id", "?") if items else "?"
    return (f"first: prompt 0 {str(prompts[0])[:80]!r}, completion 0 {str(completions[0])[:80]!r}, "
            f"item {item_id}")


def _as_floats(name: str, source: str, out: Any, n: int) -> np.ndarray:
    """Check a reward function's output and return it as float64 [n] with None -> NaN; RewardError otherwise."""
    who = f"reward {name!r} ({source})"
    try:
        values = list(out)
    except TypeError:
        raise RewardError(f"{who} returned {type(out).__name__}, not a sequence of {n} floats") from None
    if len(values) != n:
        raise RewardError(f"{who} returned {len(values)} values for {n} completions")
    out_R = np.empty(n, dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            out_R[i] = math.nan
            continue
        try:
            if isinstance(v, (str, bytes)):
                raise TypeError
            out_R[i] = float(v)
        except (TypeError, ValueError):
            raise RewardError(f"{who} returned a non-numeric value {v!r:.60} ({type(v).__name__}) at row {i}") from None
        if math.isinf(out_R[i]):
            raise RewardError(f"{who} returned {out_R[i]} at row {i}: rewards must be finite "
                              f"(None or NaN means 'does not apply')")
    return out_R


@dataclasses.dataclass(frozen=True)
class RewardSet:
    """Named reward functions with weights, plus DAPO's overlong term; build it with `from_params`.

    sources[i] says where function i came from ("built-in" or the reward file's name), for error messages.
    overlong_buffer 0 turns the overlong term off; overlong_factor is its factor (rollout.overlong_penalty)."""

    names: tuple[str, ...]
    functions: tuple[RewardFn, ...]
    sources: tuple[str, ...]
    weights: tuple[float, ...]
    max_completion_length: int
    overlong_buffer: int = 0
    overlong_factor: float = 1.0

    def __post_init__(self):
        if not len(self.names) == len(self.functions) == len(self.sources) == len(self.weights):
            raise ValueError(f"RewardSet: {len(self.names)} names, {len(self.functions)} functions, "
                             f"{len(self.sources)} sources and {len(self.weights)} weights")
        if len(set(self.names)) != len(self.names):
            raise RewardError(f"rollout.rewards {self.names} names a reward twice; use reward_weights instead")
        if OVERLONG in self.names:
            raise RewardError(f"a reward may not be called {OVERLONG!r}: that name is the overlong term's")
        if not all(math.isfinite(w) for w in self.weights):
            raise RewardError(f"rollout.reward_weights {self.weights} must be finite")

    @classmethod
    def from_params(cls, params: RolloutParams) -> RewardSet:
        """Resolve `params.rewards` against BUILTIN and the functions of `params.reward_file` (a name defined in
        both is refused as ambiguous); weights default to 1.0 each."""
        found = {name: (fn, "built-in") for name, fn in BUILTIN.items()}
        user: dict[str, RewardFn] = {}
        if params.reward_file is not None:
            user = load_reward_file(params.reward_file)
            source = pathlib.Path(params.reward_file).name
            found |= {name: (fn, source) for name, fn in user.items()}
        functions, sources = [], []
        for name in params.rewards:
            if name not in found:
                hint = difflib.get_close_matches(name, list(found), n=1)
                raise RewardError(
                    f"unknown reward {name!r}{f'; did you mean {hint[0]!r}?' if hint else ''} Available: "
                    + ", ".join(f"{k} ({src})" for k, (_, src) in sorted(found.items()))
                    + ("" if params.reward_file else "; set rollout.reward_file to add your own functions"))
            if name in BUILTIN and name in user:
                raise RewardError(f"reward {name!r} is both a built-in and a function of {params.reward_file!r}; "
                                  f"rename the function")
            functions.append(found[name][0])
            sources.append(found[name][1])
        weights = params.reward_weights or (1.0,) * len(params.rewards)
        return cls(tuple(params.rewards), tuple(functions), tuple(sources), tuple(float(w) for w in weights),
                   params.max_completion_length, params.overlong_buffer, params.overlong_penalty)

    def __call__(self, prompts: list[str], completions: list[str], items: list[Item], lengths=None,
                 truncated=None, opened=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Rewards of R completions: (total_R, terms), float64.

        terms[name] is function `name`'s raw (unweighted) reward [R], NaN where it does not apply; total_R is the
        NaN-skipping sum of weight · reward over functions (TRL multi_objective_aggregation="sum_then_normalize"),
        NaN for a row where no function applies, so that it can never pass for a real 0. With overlong_buffer > 0,
        lengths [R] (completion tokens, EOS included) are required and terms["overlong"] = overlong_penalty(...) is
        added; truncated [R] (bool: cut at L_max without EOS) forces the full -factor penalty on those rows, the
        value a length over L_max gets, whatever length was recorded for them.

        truncated [R] and opened [R] (bool: the prompt opened `<think>`, scoring.prompt_opens_thinking) also reach
        every function that asks for them by name (module docstring), so that a completion cut mid-thought, with or
        without a `<think>` tag of its own, scores as having no final answer."""
        n = len(completions)
        if len(prompts) != n or len(items) != n:
            raise ValueError(f"{len(prompts)} prompts, {n} completions and {len(items)} items: need one each per row")
        extras = {}
        for key, value in (("truncated", truncated), ("opened", opened)):
            if value is not None:
                flags = [bool(v) for v in np.asarray(value, dtype=bool).reshape(-1)]
                if len(flags) != n:
                    raise ValueError(f"{key} has {len(flags)} rows, expected {n}")
                extras[key] = flags
        terms: dict[str, np.ndarray] = {}
        for name, fn, source in zip(self.names, self.functions, self.sources):
            try:
                # Each function gets its own copy of the lists: one that edits them in place cannot reach the next.
                out = fn(list(prompts), list(completions), list(items),
                         **{k: list(v) for k, v in _asked_for(fn, extras).items()})
            except Exception as e:
                raise RewardError(f"reward {name!r} ({source}) raised {type(e).__name__}: {e} on a batch of {n} "
                                  f"completions ({_first_row(prompts, completions, items)})") from e
            terms[name] = _as_floats(name, source, out, n)
        weighted_FR = np.stack([w * terms[k] for k, w in zip(self.names, self.weights)]).reshape(len(self.names), n)
        total_R = np.where(np.isnan(weighted_FR).all(axis=0), np.nan, np.nansum(weighted_FR, axis=0))
        if self.overlong_buffer > 0:
            if lengths is None:
                raise ValueError(f"rollout.overlong_buffer={self.overlong_buffer} needs the completion lengths")
            length_R = np.asarray(lengths, dtype=np.float64)
            if length_R.shape != (n,):
                raise ValueError(f"lengths has shape {length_R.shape}, expected ({n},)")
            if truncated is not None:
                truncated_R = np.asarray(truncated, dtype=bool)
                if truncated_R.shape != (n,):
                    raise ValueError(f"truncated has shape {truncated_R.shape}, expected ({n},)")
                length_R = np.where(truncated_R, self.max_completion_length + 1, length_R)
            terms[OVERLONG] = overlong_penalty(length_R, self.max_completion_length, self.overlong_buffer,
                                               self.overlong_factor)
            total_R = total_R + terms[OVERLONG]
        return total_R, terms
