"""C7-C8: INT4 schedule preference: decisive wd33 at the large sizes, noise below."""

import pytest


@pytest.mark.claim("C7")
def test_c7_int4_large_prefers_wd33(table, decide, judge):
    """C7 per large size: the lower bound of mean val_bpb_q(wd10) - val_bpb_q(wd33) exceeds delta."""
    judge(decide(table))


@pytest.mark.claim("C8")
def test_c8_int4_small_no_preference(table, decide, judge):
    """C8: every small size's wd10 - wd33 difference equivalent to 0 within delta, and no wd10 win."""
    judge(decide(table))
