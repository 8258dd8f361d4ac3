"""caujax: JAX-native post-training of LLMs into causal reasoners."""
