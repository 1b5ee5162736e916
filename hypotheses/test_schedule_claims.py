"""C1-C5: the optimal warmdown is 33 % and does not depend on bit-width, under three setup changes.

Cells come from each claim's `cells` table in fixtures/claims.toml; `decide` runs the
claim's decider (registered under its id, `@decider("C1")` in hypotheses/schedule.py) and
measures the verdict's stability; `judge` records it.
"""

import pytest


@pytest.mark.claim("C1")
def test_c1_wd33_optimal(table, decide, judge):
    """C1 per (bit-width, size): wd33 within delta of the best warmdown (MCB bounds, paired by seed)."""
    judge(decide(table))


@pytest.mark.claim("C2")
def test_c2_schedule_independent_of_bits(table, decide, judge):
    """C2 per size: every within-seed wd x bits interaction contrast equivalent to 0 within delta."""
    judge(decide(table))


@pytest.mark.claim("C3")
def test_c3_null_survives_adamw(table, decide, judge):
    """C3: C2's contrasts on the AdamW arm, at every size (and length) it has."""
    judge(decide(table))


@pytest.mark.claim("C4")
def test_c4_null_survives_cosine_warmdown(table, decide, judge):
    """C4: C2's contrasts on the cosine-warmdown arm."""
    judge(decide(table))


@pytest.mark.claim("C5")
def test_c5_null_survives_longer_training(table, decide, judge):
    """C5: C2's contrasts on the long-training arm, per training length."""
    judge(decide(table))
