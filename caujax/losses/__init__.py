"""Post-training losses as pure functions of arrays, and the registry of per-method objectives."""
from caujax.losses import dpo, kto, sft
from caujax.losses.common import Aggregation, Loss, aggregate, logprobs_from_logits, token_logprobs

# objective(model, batch, params) -> Loss; ppo and grpo join when rl/ lands.
OBJECTIVES = {"sft": sft.objective, "dpo": dpo.objective, "kto": kto.objective}

__all__ = ["OBJECTIVES", "Aggregation", "Loss", "aggregate", "logprobs_from_logits", "token_logprobs",
           "dpo", "kto", "sft"]
