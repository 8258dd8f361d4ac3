"""PPO's actor-critic: the policy decoder, an optional separate critic decoder, and a scalar value head.

Two layouts, chosen by `PPOParams.critic`:
- "head": the value head reads the policy's own final hidden states, so one trunk forward gives log-probs and
  values (the shared-trunk actor-critic of Ziegler et al. 2019 and of TRL's old AutoModelForCausalLMWithValueHead).
- "model": a second decoder, initialised as a copy of the policy's weights, feeds the value head; this is the
  separate value model of TRL's experimental PPO and OpenRLHF, which both start it from a pretrained LM.

The train state's params are the ActorCritic's nnx.State: paths ("policy", ...), ("critic", ...), ("value_kernel",)
and ("value_bias",). `value_bias` ends in "_bias", so models/layout.is_matrix exempts it from weight decay; the
kernel is decayed like any projection.

Alignment: `values_BT[:, t]` is the value of the prefix tokens[..t], the state in which token t+1 is chosen; it
sits in the same column as `logp_BT[:, t]`, the log-prob of that action, and under the same `loss_mask_BT`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from caujax.losses.common import hidden_logprobs, next_token_targets
from caujax.models.decoder import Decoder, _param


class ActorCritic(nnx.Module):
    """policy: the Decoder being trained. critic: None for a value head on the policy's trunk, or a Decoder of
    its own. The head V(h) = h · value_kernel + value_bias starts at 0 (both zeros), so V = 0 at step 0 whatever
    the trunk, as a zero-initialised TRL/OpenRLHF value head does up to its random init scale."""

    def __init__(self, policy: Decoder, critic: Decoder | None = None, *, rngs: nnx.Rngs):
        self.policy = policy
        self.critic = critic
        trunk = policy if critic is None else critic
        # The head keeps the trunk's parameter dtype, so the whole params tree has one master dtype.
        dtype = trunk.embed.dtype
        with nnx.use_eager_sharding(False):   # logical names, resolved against a mesh later (sharding.py)
            self.value_kernel = _param(rngs, (trunk.cfg.embed_dim,), ("embed",), "zeros", dtype)
            self.value_bias = _param(rngs, (), (), "zeros", dtype)

    def values(self, h_BTD: Array) -> Array:
        """V_BT = h_BTD · value_kernel + value_bias, float32."""
        w_D = self.value_kernel[...].astype(jnp.float32)
        return jnp.einsum("BTD,D->BT", h_BTD.astype(jnp.float32), w_D) + self.value_bias[...].astype(jnp.float32)

    def forward(self, tokens_BT: Array, mask_BT: Array, *, temperature: float,
                floor_BT: Array | None = None) -> tuple[Array, Array, Array]:
        """(logp_BT, entropy_BT, values_BT), all float32 and column-aligned (see the module docstring).

        logp and entropy are those of softmax(logits / temperature) (common.hidden_logprobs). With no separate
        critic the policy trunk runs once and the head reads the same hidden states. Values are 0 where logp is 0
        (no next token: padding and the last column), so nothing past a row's last action carries a value.
        floor_BT: the sampler's top-k/top-p support (common.hidden_logprobs), None for the full vocabulary.
        """
        h_BTD = self.policy.hidden(tokens_BT, mask_BT)
        logp_BT, entropy_BT = hidden_logprobs(self.policy, h_BTD, tokens_BT, mask_BT, temperature=temperature,
                                              entropy=True, floor_BT=floor_BT)
        if self.critic is not None:
            h_BTD = self.critic.hidden(tokens_BT, mask_BT)
        _, valid_BT = next_token_targets(tokens_BT, mask_BT)
        return logp_BT, entropy_BT, jnp.where(valid_BT, self.values(h_BTD), 0.0)


def wrap(policy_graphdef: nnx.GraphDef, policy_params: nnx.State, critic: str, *,
         seed: int = 0) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, params) of an ActorCritic around the Decoder `nnx.merge(policy_graphdef, policy_params)`.

    critic="head": no critic decoder, the value head on the policy trunk. critic="model": the critic decoder is a
    copy of the policy (same graphdef, every array jnp.copy'd), as TRL and OpenRLHF initialise the value model
    from a pretrained LM. The copy owns its buffers: the two decoders train apart, and donating the train state
    never hands XLA one buffer twice. The policy's arrays are those of policy_params (not copied), in fresh
    Variables. Arrays keep their shardings; the value head is created unplaced (tiny) and placed with the rest of
    the state by step.init_state. `seed` keys the head's initialiser (zeros today, so it draws nothing).
    """
    if critic not in ("head", "model"):
        raise ValueError(f"critic={critic!r}; expected 'head' (value head on the policy trunk) or 'model' "
                         f"(a separate critic decoder)")
    # copy=True: fresh Variables around the same (immutable) arrays, so that writing into the ActorCritic never
    # writes into the caller's policy_params (plain nnx.merge would reuse its Variable objects).
    policy = nnx.merge(policy_graphdef, policy_params, copy=True)
    critic_model = nnx.merge(policy_graphdef, jax.tree.map(jnp.copy, policy_params)) if critic == "model" else None
    return nnx.split(ActorCritic(policy, critic_model, rngs=nnx.Rngs(seed)))


def policy_of(model: ActorCritic | Decoder) -> Decoder:
    """The decoder that samples: model.policy of an ActorCritic, the model itself otherwise (sampler, eval, export)."""
    return model.policy if isinstance(model, ActorCritic) else model
