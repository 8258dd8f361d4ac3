"""CPU-sized run on the same code path (big_vision's runlocal): a random 2-layer Llama-style decoder, a 1024-piece
SentencePiece tokenizer trained on the run's own text, and 32 problems from the causal generator. No network.

    python -m caujax.train --method sft --config configs/tiny.py --steps 2 --run_dir=runs/tiny

tokens per step = 4 rows x 768 (DPO: 4 pairs = 8 rows); 2 micro-batches of 2. The family is llama because
transformers 5's AutoTokenizer loads any qwen2 directory with Qwen2Tokenizer, whatever tokenizer_class says, and
the exported SentencePiece tokenizer would then encode differently.
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.models import ModelConfig


def get_config() -> RunConfig:
    return RunConfig(
        method="sft",
        model=ModelSource(arch=ModelConfig.tiny("llama", vocab_size=1024), param_dtype="float32",
                          compute_dtype="float32"),
        steps=2,
        run_dir="runs/tiny",
        data=DataConfig(source="generated", num_examples=32, seq_len=768, batch_size=4, micro_batch_size=2),
        optim=OptimConfig(lr=3e-3, schedule="constant", max_grad_norm=1.0),
        mesh=MeshConfig(data=1, fsdp=1, tensor=1),
        checkpoint=CheckpointConfig(every_steps=1, keep=2),
    )
