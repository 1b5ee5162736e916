"""C7-C8: INT4 schedule preference: decisive wd33 at the large sizes, noise below."""

import pytest

from hypotheses.cells import c7_cells, c8_cells
from hypotheses.int4 import decide_c7, decide_c8


@pytest.mark.claim("C7", cells=c7_cells)
def test_c7_int4_large_prefers_wd33(cell, table, claim, judge):
    """C7 per large size: paired z of val_bpb_q(wd10) - val_bpb_q(wd33) over seeds; wd33 wins every seed."""
    judge(decide_c7(table, claim, **cell.args))


@pytest.mark.claim("C8", cells=c8_cells)
def test_c8_int4_small_no_preference(cell, table, claim, judge):
    """C8: no small size shows a significant wd10-vs-wd33 preference (paired t, Holm across sizes)."""
    judge(decide_c8(table, claim))
