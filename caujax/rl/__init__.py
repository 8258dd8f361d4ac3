"""Online RL: rollouts, rewards and advantages (GRPO, PPO)."""
