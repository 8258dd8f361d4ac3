"""CauGym / CaLM data: loaders into one Item record, evaluation prompts, SFT targets, preference pairs."""
from caujax.data.calm import load_calm
from caujax.data.caugym import TEST_SETS, TRAIN_SETS, load_caugym, load_file, load_test_sets
from caujax.causal.answer import TYPES, infer_type
from caujax.data.items import Item, RowError
from caujax.data.prompts import (INSUFFICIENT_INSTRUCTION, STEP_BY_STEP, chat_prompt, instruction_for, item_prompt,
                                 sft_target, user_message)

__all__ = ["INSUFFICIENT_INSTRUCTION", "STEP_BY_STEP", "TEST_SETS", "TRAIN_SETS", "TYPES", "Item", "RowError",
           "chat_prompt", "infer_type", "instruction_for", "item_prompt", "load_calm", "load_caugym", "load_file",
           "load_test_sets", "sft_target", "user_message"]
