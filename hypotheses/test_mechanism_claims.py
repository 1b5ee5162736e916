"""C9: before the warmdown, INT6-QAT weights are about as far from the INT6 grid as FP16 weights."""

import pytest

from hypotheses.cells import c9_cells
from hypotheses.mechanism import decide_c9


@pytest.mark.claim("C9", cells=c9_cells)
def test_c9_no_grid_snapping(cell, table, claim, judge):
    """C9: ratio of mean INT6-grid distance, INT6-QAT over FP16, with a paired bootstrap CI."""
    judge(decide_c9(table, claim))
