"""R1-R5: the related claims (QAT fraction vs compute, cooldown fusion, cooldown shape and
beta2, long warmdown vs the int8 penalty, a larger model at int5), one case per cell or
named sub-claim of fixtures/claims.toml."""

import pytest


@pytest.mark.claim("R1")
def test_r1_optimal_qat_fraction_grows_with_compute(table, decide, judge):
    """R1: long QAT gains on short QAT by more than delta over the token budgets (per-seed trend)."""
    judge(decide(table))


@pytest.mark.claim("R2")
def test_r2_cooldown_qat_fusion_matches_or_beats(table, decide, judge):
    """R2: fused minus separate cooldown is at most delta (non-inferiority, paired by seed)."""
    judge(decide(table))


@pytest.mark.claim("R3")
def test_r3_cooldown_shape_and_beta2(table, decide, judge):
    """R3 [shape]: 1-sqrt beats linear and step by more than delta; [beta2]: a higher cooldown beta2 helps."""
    judge(decide(table))


@pytest.mark.claim("R4")
def test_r4_long_warmdown_cuts_int8_penalty(table, decide, judge):
    """R4: the FP16 int8 penalty at warmdown 0.10 minus at 1.64 exceeds delta."""
    judge(decide(table))


@pytest.mark.claim("R5")
def test_r5_train_larger_quantize_harder(table, decide, judge):
    """R5 [matched]: larger int5 beats smaller int6 at matched bytes; [qat_start]: int5 QAT from 50 % beats the last 10 %."""
    judge(decide(table))
