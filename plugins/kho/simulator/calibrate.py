"""Re-fit the people model's calibrated constants to `demography` (a maintenance tool: `python -m
kho.simulator.calibrate`, about two minutes); it prints the constants to paste into people.py and changes nothing.

Each round builds a world of day-0 people and scales, per age bin, every kind's head-age weights by how far the
pyramid's five-year group of that bin is from its target (damped by the power 0.8); the household-size draws by
the living sizes against HOUSEHOLD_SIZE_SHARES (a block's last household is cut short, so draws must lean large);
the share living with parents against THREE_GENERATION_SHARE; and the five-year death scale against
CRUDE_DEATH_RATE. Ten rounds settle to about a point of total variation distance.
"""

from __future__ import annotations

import numpy as np

from kho.simulator import calendar as cal
from kho.simulator import demography
from kho.simulator import people as model
from kho.simulator.rng import cumulative


def fit(seed: int = 11, citizens: int = 60_000, rounds: int = 10) -> dict[str, object]:
    """The calibrated constants after `rounds` rounds (the module's globals are left as they were)."""
    saved = (model._HEAD_AGE_CUM, model._SIZE_CUM, model._WITH_PARENTS, model._DEATH_SCALE)
    heads = {kind: np.array(w, dtype=np.float64) for kind, w in model._HEAD_AGE_WEIGHTS.items()}
    sizes = np.array(model._SIZE_DRAW, dtype=np.float64)
    with_parents, death_scale = model._WITH_PARENTS.copy(), model._DEATH_SCALE
    target = np.array(demography.PYRAMID_MALE) + np.array(demography.PYRAMID_FEMALE)
    try:
        for _ in range(rounds):
            model._HEAD_AGE_CUM = {kind: cumulative(list(w)) for kind, w in heads.items()}
            model._SIZE_CUM = cumulative(list(sizes))
            model._WITH_PARENTS, model._DEATH_SCALE = with_parents, death_scale
            p = model.Model(seed, citizens).citizens(np.arange(citizens))
            alive = ~p.deceased
            group = np.clip(((cal.DAY0_ORD - p.dob) / 365.2425 // 5).astype(np.int64), 0, len(target) - 1)
            shares = np.bincount(group[alive], minlength=len(target)) / alive.sum() * 100
            for b, lo in enumerate(model._HEAD_AGE_EDGES[:-1]):
                g = int(lo // 5)
                for kind in heads:
                    heads[kind][b] *= (target[g] / shares[g]) ** 0.8
            head = p.slot == 0
            living = np.bincount(p.household[alive])[p.household[head]]
            found = np.bincount(np.minimum(living, 7), minlength=8)[1:8] / head.sum()
            sizes *= np.array(demography.HOUSEHOLD_SIZE_SHARES) / np.maximum(found, 1e-6)
            elders = set(p.household[(p.role == model.PARENT) & alive].tolist())
            three = len(elders & set(p.household[p.role == model.CHILD].tolist())) / head.sum()
            with_parents = np.minimum(with_parents * (demography.THREE_GENERATION_SHARE / three) ** 0.8, 0.95)
            recent = ((p.dod >= cal.DAY0_ORD - 365) & p.deceased).sum() / alive.sum() * 1000
            death_scale *= demography.CRUDE_DEATH_RATE / recent
    finally:
        model._HEAD_AGE_CUM, model._SIZE_CUM, model._WITH_PARENTS, model._DEATH_SCALE = saved
    return {"_HEAD_AGE_WEIGHTS": {k: tuple(round(float(x / w.sum() * 100), 2) for x in w) for k, w in heads.items()},
            "_SIZE_DRAW": tuple(round(float(x / sizes.sum() * 100), 2) for x in sizes),
            "_WITH_PARENTS": tuple(round(float(x), 3) for x in with_parents), "_DEATH_SCALE": round(death_scale, 3)}


if __name__ == "__main__":
    for name, value in fit().items():
        print(f"{name} = {value!r}")
