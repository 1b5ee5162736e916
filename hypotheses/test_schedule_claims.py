"""C1-C5: the optimal warmdown is 33 % and does not depend on bit-width, under three setup changes."""

import pytest

from hypotheses.cells import arm_cells, c1_cells, c2_cells
from hypotheses.schedule import decide_c1, decide_c2, decide_null_arm


@pytest.mark.claim("C1", cells=c1_cells)
def test_c1_wd33_optimal(cell, table, claim, judge):
    """C1 per (bit-width, size): the best-LR argmin of mean val_bpb_q over warmdowns is 0.33."""
    judge(decide_c1(table, claim, **cell.args))


@pytest.mark.claim("C2", cells=c2_cells)
def test_c2_schedule_independent_of_bits(cell, table, claim, judge):
    """C2 per size: same optimal warmdown at FP16/INT8/INT6 and no wd x bits interaction (ANOVA)."""
    judge(decide_c2(table, claim, **cell.args))


@pytest.mark.claim("C3", cells=arm_cells("phase5_adamw", "adamw"))
def test_c3_null_survives_adamw(cell, table, claim, judge):
    """C3: C2's rule on the AdamW arm, at every size (and length) it has."""
    judge(decide_null_arm(table, claim))


@pytest.mark.claim("C4", cells=arm_cells("phase5_cosine", "cosine"))
def test_c4_null_survives_cosine_warmdown(cell, table, claim, judge):
    """C4: C2's rule on the cosine-warmdown arm."""
    judge(decide_null_arm(table, claim))


@pytest.mark.claim("C5", cells=arm_cells("phase5_long", "long"))
def test_c5_null_survives_longer_training(cell, table, claim, judge):
    """C5: C2's rule on the long-training arm, per training length."""
    judge(decide_null_arm(table, claim))
