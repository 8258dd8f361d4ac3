"""One jitted KV-cache sampler, shared by evaluation and by GRPO/PPO rollouts."""
from caujax.sampling.methods import SamplingParams
from caujax.sampling.sampler import SampleOutput, generate, sample, sample_ids

__all__ = ["SampleOutput", "SamplingParams", "generate", "sample", "sample_ids"]
