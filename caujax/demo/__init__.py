"""`make demo`: post-train a small pretrained model into a better causal reasoner on a CPU, with LoRA, and measure it
honestly on problems it never saw (pipeline.py has the stages, report.py the numbers, config.py the settings)."""
