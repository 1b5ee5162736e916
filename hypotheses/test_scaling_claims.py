"""C6: the INT6 penalty is log-linear in size; a fit on Phase 2 sizes predicts the held-out sizes."""

import pytest

from hypotheses.cells import c6_cells
from hypotheses.scaling import decide_c6


@pytest.mark.claim("C6", cells=c6_cells)
def test_c6_int6_penalty_log_linear(cell, table, claim, judge):
    """C6: OLS of the INT6 penalty on log(params) over Phase 2 sizes; held-out means inside 95 % PIs."""
    judge(decide_c6(table, claim, **cell.args))
