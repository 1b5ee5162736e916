"""`sweep --dry-run`: every distinct configuration of a profile trains a few steps; nothing is cached."""

from engine.cli import main
from engine.dryrun import config_key, dry_configs
from engine.memplan import GiB


def test_a_profile_falls_into_few_configurations(unit):
    _, profile, _ = unit
    specs = profile.all_specs()  # 36 runs: 3 bit-widths x 3 warmdowns x 4 seeds at one size
    configs = dry_configs(specs, steps=2, gpu_memory=8 * GiB, precision="fp32", micro_steps=1)
    assert len(specs) == 36 and len(configs) == 2  # full precision and QAT; seeds and warmdowns share a shape
    assert sum(c.runs for c in configs) == 36
    assert {c.key for c in configs} == {config_key(s) for s in specs}
    for c in configs:
        assert c.spec.steps == 2 and c.spec.batch_seqs == c.micro_seqs  # one micro-batch a step
        assert c.spec.probe_fracs == ()


def test_dry_run_trains_each_configuration_and_caches_nothing(unit, capsys, one_thread):
    path, _, cache = unit
    rc = main(["sweep", "--profile", str(path), "--dry-run", "--steps", "2", "--gpu-memory", "8", "--jobs", "1",
               "--cache-dir", str(cache.root)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "2 configurations of 36 runs" in out and "dry run: 2 ok, 0 failed" in out
    assert "t10k fp16 muon" in out and "t10k int" in out
    assert cache.missing(unit[1].all_specs()) == unit[1].all_specs()  # no result was written


def test_dry_run_names_a_size_the_profile_does_not_have(unit, capsys):
    path, _, cache = unit
    rc = main(["sweep", "--profile", str(path), "--dry-run", "--sizes", "t7k", "--cache-dir", str(cache.root)])
    assert rc == 2 and "--sizes t7k: not a size of profile 'unit'" in capsys.readouterr().err


def test_plan_prints_the_memory_plan_for_a_given_device(capsys):
    assert main(["plan", "--profile", "tiny", "--gpu-memory", "40"]) == 0
    out = capsys.readouterr().out
    assert "device 40.0 GiB" in out and "micro" in out and "accum" in out
