"""Loss hyperparameters of every method, as plain dataclasses (no jax), so that a run's config can hold them.

Each class is the `--<method>.*` section of a RunConfig (caujax/methods.py ties a class to its method); the
docstrings name the paper's symbol and the TRL default of each field.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

SFTLossType = Literal["nll", "dft"]
DPOLossType = Literal["sigmoid", "ipo", "hinge"]


@dataclasses.dataclass(frozen=True)
class SFTParams:
    """loss_type: "nll" is -log p_t; "dft" (Wu et al. 2025, Dynamic Fine-Tuning eq. 10) is -stopgrad(p_t) log p_t."""

    loss_type: SFTLossType = "nll"

    def __post_init__(self):
        if self.loss_type not in ("nll", "dft"):
            raise ValueError(f"SFTParams.loss_type={self.loss_type!r}; expected 'nll' or 'dft'")


@dataclasses.dataclass(frozen=True)
class DPOParams:
    """beta: β of DPO eq. 7 (for IPO, the τ of Azar et al. eq. 17). TRL default 0.1.
    loss_type: "sigmoid" (DPO), "ipo" (Azar et al. 2023) or "hinge" (SLiC, Zhao et al. 2023).
    label_smoothing: ε of conservative DPO (cDPO, Mitchell 2023), sigmoid only. TRL 1.x has no smoothing in its
    sigmoid loss; at ε = 0 the two are the same function."""

    beta: float = 0.1
    loss_type: DPOLossType = "sigmoid"
    label_smoothing: float = 0.0

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"DPOParams.beta must be > 0, got {self.beta}")
        if self.loss_type not in ("sigmoid", "ipo", "hinge"):
            raise ValueError(f"DPOParams.loss_type={self.loss_type!r}; expected 'sigmoid', 'ipo' or 'hinge'")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"DPOParams.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.label_smoothing and self.loss_type != "sigmoid":
            raise ValueError(f"label_smoothing={self.label_smoothing} only applies to loss_type 'sigmoid', "
                             f"not {self.loss_type!r}")


@dataclasses.dataclass(frozen=True)
class KTOParams:
    """beta: β of KTO eq. 7 (TRL default 0.1). desirable_weight / undesirable_weight: λ_D and λ_U; with
    n_D != n_U the paper (eq. 8) suggests λ_D n_D / (λ_U n_U) in [1, 4/3]."""

    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"KTOParams.beta must be > 0, got {self.beta}")
        for name in ("desirable_weight", "undesirable_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"KTOParams.{name} must be >= 0, got {getattr(self, name)}")
