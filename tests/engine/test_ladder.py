"""Size ladder: every name's real parameter count within 10 % of its name."""

import pytest

from engine.ladder import LADDER, count_params, get_config
from engine.model import GPT

SMALL = [n for n, c in LADDER.items() if c.nominal_params <= 20_000_000]


@pytest.mark.parametrize("name", list(LADDER))
def test_count_within_10_percent_of_name(name):
    cfg = LADDER[name]
    n = count_params(cfg, cfg.ref_vocab)
    assert abs(n / cfg.nominal_params - 1) <= 0.10, f"{name}: {n:,} params"


@pytest.mark.parametrize("name", SMALL)
def test_analytic_count_matches_built_model(name):
    cfg = LADDER[name]
    model = GPT(cfg, cfg.ref_vocab)
    assert sum(p.numel() for p in model.parameters()) == count_params(cfg, cfg.ref_vocab)


def test_paper_sizes_present():
    for name in ["3M", "5M", "8M", "15M", "30M", "50M", "100M", "175M", "250M", "350M"]:
        assert name in LADDER


def test_unknown_size_message():
    with pytest.raises(ValueError, match="unknown size 'XL'"):
        get_config("XL")
