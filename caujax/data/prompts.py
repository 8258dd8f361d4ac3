"""Prompts exactly as CauGym's evaluation builds them, and SFT targets rendered from the worked solutions."""
import json
import re

from caujax.causal.answer import LACK_CONDITION
from caujax.data.items import Item, yes_no_from_reason

STEP_BY_STEP = "Let's think step by step."
# CauGym eval/instructions/insuff_ins.txt, byte for byte (120 bytes, no trailing newline).
INSUFFICIENT_INSTRUCTION = ("Let's think step by step. If the condition is not enough to solve the question, "
                            'output "LACK_CONDITION" as final answer.')


def instruction_for(item: Item) -> str:
    """The insufficient set's own instruction for its items, "Let's think step by step." for everything else."""
    return INSUFFICIENT_INSTRUCTION if item.set_name == "insufficient" else STEP_BY_STEP


def user_message(problem: str, instruction: str = STEP_BY_STEP) -> str:
    """The single user turn of CauGym eval/sample_generate.py (no system prompt)."""
    return f"{problem}\n{instruction}"


def chat_prompt(tokenizer, problem: str, instruction: str = STEP_BY_STEP) -> str:
    """`tokenizer.apply_chat_template` over the one user message, with the generation prompt appended.

    The paper's script exits when a tokenizer has no chat template; this raises instead of guessing one."""
    if getattr(tokenizer, "chat_template", None) is None:
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ValueError(f"tokenizer {name!r} has no chat template; CauGym prompts need one "
                         "(set tokenizer.chat_template, or use the instruct/chat variant of the model)")
    messages = [{"role": "user", "content": user_message(problem, instruction)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def item_prompt(tokenizer, item: Item) -> str:
    """The evaluation prompt of one item, with the instruction its set uses."""
    return chat_prompt(tokenizer, item.problem, instruction_for(item))


def letter_line(real_world_meaning: str) -> str:
    """CaLM's "... A represents smku, B represents arbu and C represents eons." as
    "Let A = smku, B = arbu, C = eons"."""
    body = real_world_meaning.split("defined as follows:", 1)[-1].strip().rstrip(".").strip()
    # split only before "<Letter> represents", so names containing "and" or commas survive
    parts = re.split(r"(?:, | and )(?=[A-Z]\w* represents )", body)
    pairs = [re.fullmatch(r"(\w+) represents (.+)", p.strip(), re.DOTALL) for p in parts]
    if not pairs or any(m is None for m in pairs):
        raise ValueError(f"cannot read the letter meanings from {real_world_meaning!r:.120}")
    return "Let " + ", ".join(f"{m.group(1)} = {m.group(2)}" for m in pairs) + "."


def answer_line(answer: str, yes_no: str | None = None) -> str:
    """The last line of a rendered solution, from a CauGym answer string: LACK_CONDITION as is, else the JSON with
    PROB to four decimals (as the prompt asks) and ANSWER replaced by `yes_no` when given. Chosen and rejected
    sides of a pair go through here, so they never differ by formatting alone."""
    if answer.strip() == LACK_CONDITION:
        return LACK_CONDITION
    gt = json.loads(answer)
    line = {}
    if "ANSWER" in gt:
        line["ANSWER"] = yes_no or gt["ANSWER"]
    if "PROB" in gt:
        line["PROB"] = f"{float(gt['PROB']):.4f}"
    return json.dumps(line)


def render_solution(reason: dict[str, str], last_line: str, real_world_meaning: str | None = None) -> str:
    """DATA.md "Rendering recipe": "Let A = ..." when the letter meanings are known (base and its rewrites name
    variables in words while the steps use letters), then "Step k: ..." lines, then the answer line."""
    lines = [letter_line(real_world_meaning)] if real_world_meaning else []
    lines += [f"{k}: {v}" for k, v in reason.items() if v]
    lines.append(last_line)
    return "\n".join(lines)


def sft_target(item: Item) -> str:
    """The step-by-step solution text for SFT: the item's Reason rendered, then its answer with the Yes/No that
    the solution's last step states (for ETT the opposite of base_dataset's ANSWER field, DATA.md 1.4).

    Insufficient items have no target: their Reason solves the complete problem, not the one that was asked."""
    if item.answer.strip() == LACK_CONDITION:
        raise ValueError(f"item {item.id} of {item.set_name}: no worked solution for a LACK_CONDITION item")
    if not item.reason:
        raise ValueError(f"item {item.id} of {item.set_name} has no Reason to render")
    return render_solution(item.reason, answer_line(item.answer, yes_no_from_reason(item.reason)),
                           item.real_world_meaning)
