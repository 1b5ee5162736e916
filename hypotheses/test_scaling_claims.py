"""C6: the INT6 penalty is log-linear in size; a fit on Phase 2 sizes predicts the held-out sizes."""

import pytest


@pytest.mark.claim("C6")
def test_c6_int6_penalty_log_linear(table, decide, judge):
    """C6: every held-out size's prediction error of the log-linear fit lies within delta (90 % CI)."""
    judge(decide(table))
