"""Profiles as data: counts, validation errors, and that every profile's runs can train."""

import pytest

from engine.design import ProfileError, available_profiles, estimate_flops, load_profile
from engine.spec import RunSpec


def test_paper_profile_reproduces_the_reported_run_counts():
    p = load_profile("paper")
    assert len(p.design("phase2").specs) == 720
    paper_designs = [d for name, d in p.designs.items() if not name.startswith("r")]  # r*: related claims R1-R5
    phase5 = [d for d in paper_designs if d.name != "phase2"]
    assert sum(len(d.specs) for d in phase5) == 625
    # no run is shared (or double counted) between the paper's own designs
    assert len({s.run_id for d in paper_designs for s in d.specs}) == 1345
    # the related claims add 161 runs of their own (R3/R4/R5 reference arms reuse Phase 2/5 runs)
    assert len(p.all_specs()) == 1506
    assert p.role("int4_small") == ["3M", "5M", "8M", "15M", "20M", "30M"]


@pytest.mark.parametrize("name", available_profiles())
def test_every_profile_has_every_claims_design(name):
    p = load_profile(name)
    for design in ("phase2", "phase5_adamw", "phase5_cosine", "phase5_long", "phase5_sizes", "phase5_int4",
                   "mechanism_probe"):
        assert p.design(design).specs
    assert set(p.role("int4_large")) <= set(p.design("phase5_int4").sizes)
    assert not set(p.design("phase5_sizes").sizes) & set(p.design("phase2").sizes)  # held out


def test_tiny_profile_size():
    assert len(load_profile("tiny").all_specs()) == 786  # INT4/INT3 Phase 2 shares 32 runs with phase5_int4 (was 818 with INT8/INT6)


def _write(tmp_path, body: str):
    path = tmp_path / "p.toml"
    path.write_text('[profile]\nname = "x"\n' + body)
    return path


@pytest.mark.parametrize(
    "body, needle",
    [
        ("[designs.a]\ngrid = { size = ['t10k'], warmup = [0.1] }", "grid key 'warmup' is not a RunSpec field"),
        ("[designs.a]\ngrid = { size = ['t10k'], wd = [0.1], warmdown = [0.2] }",
         "[designs.a] grid names both 'wd' and 'warmdown' (the same field): keep 'warmdown'"),
        ("[designs.a]\ngrid = { size = ['t10k'], bits = [2] }", "makes an invalid run: RunSpec.bits=2"),
        ("[designs.a]\ngrid = { size = [] }", "must be a non-empty list"),
        ("[defaults]\nlr = 1\n[designs.a]\ngrid = { size = ['t10k'] }", "unknown RunSpec field(s) ['lr']"),
        ("[designs.a]\nset = { size = 't10k' }", "missing key [designs.a] 'grid'"),
        ("", "missing key 'designs'"),
        ("[roles]\nbig = ['t7k']\n[designs.a]\ngrid = { size = ['t10k'] }",
         "[roles] big names size(s) ['t7k'] that no design of the profile trains"),
        ("[roles]\nbig = 't10k'\n[designs.a]\ngrid = { size = ['t10k'] }", "[roles] big must be a non-empty list"),
    ],
)
def test_malformed_profiles_name_file_and_key(tmp_path, body, needle):
    with pytest.raises(ProfileError) as e:
        load_profile(_write(tmp_path, body))
    assert needle in str(e.value) and "p.toml" in str(e.value)


def test_wd_is_an_alias_of_warmdown_in_a_profile(tmp_path):
    """`wd`, `wd_shape` (the fields' names before issue 23) still work in defaults, a grid and a set: same runs, same ids."""
    new = load_profile(_write(tmp_path, "[defaults]\nwarmdown = 0.2\n[designs.a]\ngrid = { size = ['t10k'], "
                                        "warmdown = [0.1, 0.5] }\n[designs.b]\nset = { warmdown = 0.25, warmdown_shape = 'step' }\n"
                                        "grid = { size = ['t10k'] }\n[designs.c]\ngrid = { size = ['t10k'] }"))
    old = load_profile(_write(tmp_path, "[defaults]\nwd = 0.2\n[designs.a]\ngrid = { size = ['t10k'], "
                                        "wd = [0.1, 0.5] }\n[designs.b]\nset = { wd = 0.25, wd_shape = 'step' }\n"
                                        "grid = { size = ['t10k'] }\n[designs.c]\ngrid = { size = ['t10k'] }"))
    assert [s.run_id for s in old.all_specs()] == [s.run_id for s in new.all_specs()]
    assert sorted(s.warmdown for s in old.all_specs()) == [0.1, 0.2, 0.25, 0.5]
    assert old.design("a").grid == {"size": ["t10k"], "warmdown": [0.1, 0.5]} and old.design("b").fixed == {
        "warmdown": 0.25, "warmdown_shape": "step"}


def test_a_misspelt_role_size_is_an_error_not_a_dropped_test_case(tmp_path):
    """`int4_large = ["t60k", "t7k"]` once loaded and silently dropped C7's case for the size it meant."""
    from engine.design import PROFILE_DIR

    text = (PROFILE_DIR / "tiny.toml").read_text()
    assert 'int4_large = ["t60k", "t100k"]' in text
    path = tmp_path / "tiny.toml"
    path.write_text(text.replace('int4_large = ["t60k", "t100k"]', 'int4_large = ["t60k", "t7k"]'))
    with pytest.raises(ProfileError, match=r"tiny.toml: \[roles\] int4_large names size\(s\) \['t7k'\]"):
        load_profile(path)


def test_an_unreadable_profile_names_its_file(tmp_path):
    not_utf8 = tmp_path / "latin1.toml"
    not_utf8.write_bytes('[profile]\nname = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(ProfileError, match=r"latin1.toml: not UTF-8 text"):
        load_profile(not_utf8)
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ProfileError, match=r"dir.toml: cannot read the profile"):
        load_profile(tmp_path / "dir.toml")


def test_flops_estimate_grows_with_size_and_tokens():
    a, b = RunSpec(size="t20k", steps=10), RunSpec(size="t60k", steps=10)
    assert estimate_flops(b) > estimate_flops(a) > 0
    assert estimate_flops(a.replace(steps=20)) == pytest.approx(2 * estimate_flops(a))


@pytest.mark.slow
def test_small_profile_run_trains_on_cpu(tmp_path):
    """A small-profile spec (3M, sp1024 on KJV) runs end to end, shortened to 8 steps."""
    from engine.train import train

    spec = load_profile("small").design("phase2").specs[0].replace(steps=8, batch_tokens=1024, val_tokens=2048)
    r = train(spec, data_dir=tmp_path)
    assert r["status"] == "ok", r.get("diverged_reason")
    assert abs(r["n_params"] / 3e6 - 1) < 0.1 and r["val_tokens_evaluated"] == 2048
