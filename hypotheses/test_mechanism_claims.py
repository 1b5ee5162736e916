"""C9: before the warmdown, INT6-QAT weights are about as far from the INT6 grid as FP16 weights."""

import pytest


@pytest.mark.claim("C9")
def test_c9_no_grid_snapping(table, decide, judge):
    """C9: ratio of mean INT6-grid distance, INT6-QAT over FP16, inside the band (Fieller interval)."""
    judge(decide(table))
