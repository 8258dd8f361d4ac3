"""Rung 2-3 quantities of one reading of a CLadder item: the identifications the graph allows (backdoor,
front-door, instrumental variable, mediation formula), evaluated on the given probabilities.

Every function returns a list of (label, array) for the strategies whose criteria hold in the graph and whose
probabilities the text gives; several valid strategies estimate one true value, so the caller intersects their
ranges. Graph criteria come from `caujax.causal.scm.CausalGraph` (d-separation, Pearl's backdoor criterion) and
depend on the graph and the roles only, so they are cached across the readings of one question; the formulas and
their sources are in `cladder_math`.
"""
from __future__ import annotations

import functools

import numpy as np

from caujax.causal.cladder_math import (Facts, Missing, confounded_mediation, do_mean, ett_frontdoor, ett_mean,
                                        frontdoor_mean, nde, nie, wald)
from caujax.causal.scm import CausalGraph

_cache = functools.lru_cache(maxsize=4096)


@_cache
def backdoor_sets(g: CausalGraph, x: str, y: str) -> tuple[tuple, ...]:
    """Pearl's backdoor criterion (Causality, def. 3.3.1), sets of at most one node: the text never gives a joint
    distribution of two adjustment variables."""
    return tuple(tuple(z) for z in g.adjustment_sets(x, y, "backdoor", max_size=1))


@_cache
def frontdoor_nodes(g: CausalGraph, x: str, y: str) -> tuple[str, ...]:
    """Single nodes m meeting Pearl's front-door criterion (Causality, def. 3.3.3): m intercepts every directed
    x -> y path, no unblocked backdoor path x -> m, and x blocks every backdoor path m -> y."""
    paths = g.directed_paths(x, y)
    return tuple(m for m in g.nodes if m not in (x, y) and paths and all(m in p for p in paths)
                 and g.is_backdoor_set(x, m, []) and g.is_backdoor_set(m, y, [x]))


@_cache
def instruments(g: CausalGraph, x: str, y: str) -> tuple[str, ...]:
    """z with an edge into x that reaches y only through x: d-separated from y once x's out-edges are cut
    (exclusion and independence, Causality sec. 7.4.5)."""
    cut = g.without_out_edges(x)
    return tuple(z for z in g.nodes if z not in (x, y) and g.has_edge(z, x) and cut.d_separated({z}, {y}, set()))


@_cache
def mediation_covariates(g: CausalGraph, x: str, y: str, ms: tuple) -> tuple[tuple, ...]:
    """Covariate sets w (empty, or one node) under which the mediation formula holds (`is_mediation_set`): no
    confounding of x -> y, of ms -> y given x, nor of x -> ms. The empty set first."""
    out = tuple(() for _ in [0] if g.is_mediation_set(x, y, list(ms), []))
    return out + tuple((w,) for w in g.nodes if w not in (x, y, *ms) and g.is_mediation_set(x, y, list(ms), [w]))


@_cache
def through_all(g: CausalGraph, x: str, y: str, ms: tuple) -> bool:
    """Every directed x -> y path passes through a node of ms (the whole effect is indirect)."""
    paths = g.directed_paths(x, y)
    return bool(paths) and all(any(n in ms for n in p[1:-1]) for p in paths)


def _collect(candidates) -> list[tuple[str, object]]:
    out = []
    for label, fn in candidates:
        try:
            out.append((label, fn()))
        except Missing:
            continue
    return out


def total_effect(g: CausalGraph, f: Facts, x: str, y: str) -> list:
    """ATE = E[Y | do(X=1)] - E[Y | do(X=0)]."""
    cands = []
    for z in backdoor_sets(g, x, y):
        cands.append((f"backdoor adjustment for {{{', '.join(z)}}}",
                      lambda z=z: do_mean(f, x, y, 1, z) - do_mean(f, x, y, 0, z)))
    for m in frontdoor_nodes(g, x, y):
        cands.append((f"front-door adjustment through {m}",
                      lambda m=m: frontdoor_mean(f, x, y, m, 1) - frontdoor_mean(f, x, y, m, 0)))
    for z in instruments(g, x, y):
        cands.append((f"instrumental variable {z} (Wald ratio)", lambda z=z: wald(f, x, y, z)))
    return _collect(cands)


def ett_effect(g: CausalGraph, f: Facts, x: str, y: str, t: int) -> list:
    """E[Y_{X=1-t} - Y_{X=t} | X = t]: how much more likely Y is among X = t units had X been 1 - t."""
    cands = []
    for z in backdoor_sets(g, x, y):
        cands.append((f"backdoor adjustment for {{{', '.join(z)}}} within X={t}",
                      lambda z=z: ett_mean(f, x, y, t, 1 - t, z) - ett_mean(f, x, y, t, t, z)))
    for m in frontdoor_nodes(g, x, y):
        cands.append((f"front-door ETT through {m}",
                      lambda m=m: ett_frontdoor(f, x, y, m, t, 1 - t) - ett_frontdoor(f, x, y, m, t, t)))
    return _collect(cands)


def natural_effect(g: CausalGraph, f: Facts, x: str, y: str, ms: list[str], kind: str) -> list:
    """NDE / NIE from the x = 0 baseline. One mediator: the mediation formula when nothing confounds, bounds when
    one given covariate w confounds m -> y but P(y | x, m, w) is not given. When the mediators intercept every
    directed path, NIE is the total effect and NDE is 0."""
    ms_t, cands = tuple(ms), []
    if len(ms) == 1:
        (m,) = ms
        for w in mediation_covariates(g, x, y, ms_t):
            if not w:
                cands.append((f"mediation formula through {m}",
                              (lambda: nde(f, x, y, m)) if kind == "nde" else (lambda: nie(f, x, y, m))))
            else:
                label = f"bounds over P({y} | {x}, {m}, {w[0]}), which is not given ({w[0]} confounds {m} -> {y})"
                cands.append((label, lambda w=w[0]: confounded_mediation(f, x, y, m, w, kind)))
    if through_all(g, x, y, ms_t):
        if kind == "nie":
            return _collect(cands) + [(f"the whole effect passes {', '.join(ms)}: NIE = ATE by {label}", v)
                                      for label, v in total_effect(g, f, x, y)]
        cands.append((f"no directed path avoids {', '.join(ms)}: NDE = 0", lambda: np.zeros(1)))
    return _collect(cands)
