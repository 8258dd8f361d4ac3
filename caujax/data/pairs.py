"""Offline preference data: DPO pairs and KTO examples whose rejected side is a plausible wrong solution."""
import hashlib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from caujax import scoring
from caujax.causal.corrupt import corrupt
from caujax.data.items import Item
from caujax.data.prompts import answer_line, instruction_for, render_solution, sft_target, user_message

# A wrong-solution maker: (item, seed) -> full solution text whose final answer is wrong.
WrongMaker = Callable[[Item, int], str]


@dataclass(frozen=True)
class Preference:
    """One DPO pair. `prompt` is the user message (problem + instruction); apply the model's chat template later."""
    id: str
    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class KTOExample:
    id: str
    prompt: str
    completion: str
    label: bool          # True: desirable


def item_seed(seed: int, item: Item) -> int:
    """A per-item seed from the run seed and the item's identity, so an item's pair does not depend on its
    position in the list (subsets and reorderings give the same pairs)."""
    digest = hashlib.sha256(f"{seed}/{item.set_name}/{item.id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def causal_wrong_solution(item: Item, seed: int) -> str:
    """The causal engine's wrong solution (one plausible mistake, `caujax.causal.corrupt`), rendered exactly as
    the chosen side is. The item's own Reason pins the letters and 0/1 codes the mistake is written in."""
    wrong = corrupt(item.problem, item.reason or None, seed=seed)
    return render_solution(wrong.reason, answer_line(wrong.answer), item.real_world_meaning)


def dpo_pairs(items: Iterable[Item], seed: int = 0, *, make_wrong: WrongMaker = causal_wrong_solution,
              attempts: int = 8, skip_unusable: bool = False) -> list[Preference]:
    """One pair per item: chosen = the rendered worked solution, rejected = a wrong one. Deterministic in `seed`.

    Every pair is checked with the strict scorer: chosen must be right and rejected wrong. A maker whose mistake
    happens to leave the answer right is retried with the next seed, up to `attempts`. Items with no worked
    solution (LACK_CONDITION, no Reason) or no wrong one (text the engine cannot parse) raise ValueError, or with
    skip_unusable are left out with one warning that counts them."""
    pairs, skipped = [], []
    for item in items:
        try:
            pairs.append(_pair(item, seed, make_wrong, attempts))
        except ValueError as e:
            if not skip_unusable:
                raise
            skipped.append((item.id, str(e)))
    if skipped:
        warnings.warn(f"skipped {len(skipped)} items without a usable pair, e.g. {skipped[0][0]}: {skipped[0][1]}",
                      stacklevel=2)
    return pairs


def _pair(item: Item, seed: int, make_wrong: WrongMaker, attempts: int) -> Preference:
    chosen = sft_target(item)
    if not scoring.score(chosen, item.answer, "strict"):
        raise ValueError(f"item {item.id} of {item.set_name}: the rendered solution does not score as correct")
    base = item_seed(seed, item)
    for k in range(attempts):
        rejected = make_wrong(item, (base + k) % 2**63)
        if not scoring.score(rejected, item.answer, "strict") and rejected != chosen:
            return Preference(item.id, user_message(item.problem, instruction_for(item)), chosen, rejected)
    raise ValueError(f"item {item.id} of {item.set_name}: no wrong solution in {attempts} attempts")


def kto_examples(items: Iterable[Item], seed: int = 0, **kwargs) -> list[KTOExample]:
    """Unpaired KTO data from the same pairs: each item gives one desirable and one undesirable completion, so
    the classes are balanced (KTO's lambda_D = lambda_U = 1 fits)."""
    out = []
    for pair in dpo_pairs(items, seed, **kwargs):
        out.append(KTOExample(pair.id, pair.prompt, pair.chosen, True))
        out.append(KTOExample(pair.id, pair.prompt, pair.rejected, False))
    return out
