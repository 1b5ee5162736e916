"""Command line of the claim layer: `python -m hypotheses {calibrate,plan,report}`.

- `calibrate`: type-I error and power of every decision rule, by simulation, per profile
  (the table docs/claims.md and the report publish; the unit tests assert its bounds), with each
  rule's least favourable true case and its type-I errors when seeds are correlated;
  `--reliability` also checks the stability figure against simulated re-runs
  (reliability-<profile>.md beside the calibration json);
- `plan`: per test case, the seeds a profile needs for 80 % power at the paper's effect, from
  the seed SDs of the runs already in the cache (or the profile's prior when it has none),
  and, where the cache holds the case's runs, its verdict now, that verdict's stability and
  the seeds at which a re-run would repeat some outcome with probability >= the stability
  target (hypotheses/simulate.py: ``seeds_for_stability``);
- `report`: decide every claim from the cache alone (never trains) and write the report.
Run counts, tokens and FLOPs per design are the engine's: `python -m engine plan`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.design import ProfileError, available_profiles, load_profile
from hypotheses.simulate import STABILITY_TARGET

CALIBRATION_DIR = Path("reports") / "calibration"
DEFAULT_DRAWS = 300
DEFAULT_RHO = 0.3  # = hypotheses.calibration.CORRELATED_RHO (imported lazily there)


def _profiles(names: list[str] | None):
    """The profiles named (default: all three), each with its [verdicts] checked against the claims."""
    from hypotheses.checks import check_verdicts
    from hypotheses.claims import load_claims

    profiles = [load_profile(n) for n in (names or ["tiny", "small", "paper"])]
    for profile in profiles:
        check_verdicts(profile, load_claims())
    return profiles


def _delta_text(delta: float) -> str:
    """δ as the tables show it; C9 decides on its band, not a δ (stored as NaN)."""
    return "band" if delta != delta else f"{delta:g}"


def _rate(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"


def calibration_table(rows) -> str:
    rho = next((r.corr_rho for r in rows if r.corr_rho == r.corr_rho), None)
    corr = f"seeds correlated (rho {rho:g}): " if rho is not None else "seeds correlated: "
    head = ("| claim | profile | test case | seeds | delta | P(contradicted \\| true) | "
            "P(reproduced \\| false at delta) | power: P(reproduced \\| true) | P(contradicted \\| clearly false) | "
            f"P(contradicted \\| true at its edge) | {corr}P(contradicted \\| true) | "
            f"{corr}P(reproduced \\| false at delta) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r.claim_id} | {r.profile} | {r.cell} | {r.n_seeds} | {_delta_text(r.delta)} | {r.false_contradict:.3f} | "
        f"{r.false_reproduce:.3f} | {r.power_reproduce:.3f} | {r.power_contradict:.3f} | {_rate(r.edge_contradict)} | "
        f"{_rate(r.corr_false_contradict)} | {_rate(r.corr_false_reproduce)} |\n" for r in rows)


def _selected_claims(ids: str) -> dict:
    """The claims named in a comma-separated list (all when empty); an unknown id is an error."""
    from hypotheses.claims import load_claims

    claims = load_claims()
    wanted = [c.strip() for c in ids.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in claims]
    if unknown:
        raise ValueError(f"unknown claim ids {unknown}; the claims are {list(claims)}")
    return {k: v for k, v in claims.items() if k in wanted} if wanted else claims


def _reliability(claims: dict, profile, args) -> str:
    """The reliability table of the stability figure at ``profile`` (markdown), over the first
    test case of each selected claim (default: calibration.RELIABILITY_CLAIMS)."""
    import pandas as pd

    from hypotheses.calibration import RELIABILITY_CLAIMS, reliability_cell, reliability_markdown
    from hypotheses.cells import cells_for

    ids = list(claims) if args.claims else [c for c in RELIABILITY_CLAIMS if c in claims]
    records = []
    for i, cid in enumerate(ids):
        claim = claims[cid].at_profile(profile)
        cell = cells_for(claim, profile)[0]
        records.append(reliability_cell(claim, profile, cell, args.reliability_datasets, args.reliability_draws,
                                        rng_seed=i))
    command = (f"python -m hypotheses calibrate --profile {profile.name} --reliability "
               f"--reliability-datasets {args.reliability_datasets} --reliability-draws {args.reliability_draws}"
               + (f" --claims {args.claims}" if args.claims else ""))
    title = (f"Reliability of the stability figure: {profile.name} profile\n\n`{command}`: "
             f"{args.reliability_datasets} datasets per truth, {args.reliability_draws} stability draws each "
             f"(half bin the dataset, half give its predicted agreement); truths along each claim's "
             f"true -> boundary line (hypotheses/calibration.py: RELIABILITY_FRACTIONS)")
    return reliability_markdown(pd.concat(records, ignore_index=True), title)


def cmd_calibrate(args) -> int:
    from hypotheses.calibration import calibrate

    claims = _selected_claims(args.claims)
    all_rows = []
    for profile in _profiles(args.profile):
        rows = calibrate(claims, profile, args.draws, correlated_rho=args.rho or None)
        all_rows += rows
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"{profile.name}.json"
            path.write_text(json.dumps({
                "profile": profile.name, "draws": args.draws, "rho": args.rho,
                "command": f"python -m hypotheses calibrate --profile {profile.name} --draws {args.draws}"
                           + (f" --rho {args.rho:g}" if args.rho != DEFAULT_RHO else ""),
                "rows": [r.as_dict() for r in rows]}, indent=1))
        if args.reliability:
            text = _reliability(claims, profile, args)
            print(text)
            if args.out:
                (args.out / f"reliability-{profile.name}.md").write_text(text)
    print(calibration_table(all_rows), end="")
    return 0


def _cache_noise(records: list[dict], metric: str):
    """The noise SDs fitted to cached runs, or None where they have no replicated seeds."""
    from engine.cache import records_to_table
    from hypotheses.simulate import estimate_noise

    if not records:
        return None
    try:
        return estimate_noise(records_to_table(records), metric)
    except ValueError:  # fewer than 2 finite seeds per arm: the profile's prior stands in
        return None


def _stable_text(found) -> str:
    n, outcome, p = found
    return f"{n} ({outcome}, {p:.0%})"


def _seeds_for_stability_text(claim, cell, table, draws: int, target: float) -> str:
    """Seeds for a stable verdict, as the plan shows it. Where the fewest seeds give a stably
    *inconclusive* verdict (a rule that needs more seeds than that is inconclusive whatever
    the data), the seeds for a stably decided verdict follow: that is the count a design wants."""
    from hypotheses.calibration import MAX_SEEDS
    from hypotheses.cells import cell_decider
    from hypotheses.simulate import seeds_for_stability
    from hypotheses.verdict import CONTRADICTED, INCONCLUSIVE, REPRODUCED

    decide = cell_decider(claim, cell)
    metric = claim.threshold("metric")
    try:
        found = seeds_for_stability(decide, table, metric, draws, target, MAX_SEEDS)
    except ValueError as e:  # too few finite seeds to fit the noise
        return f"n/a ({e})"
    if found is None:
        return f"> {MAX_SEEDS}"
    text = _stable_text(found)
    if found[1] == INCONCLUSIVE:
        decided = seeds_for_stability(decide, table, metric, draws, target, MAX_SEEDS,
                                      outcomes=(REPRODUCED, CONTRADICTED))
        text += "; decided: " + (_stable_text(decided) if decided else f"> {MAX_SEEDS}")
    return text


def cmd_plan(args) -> int:
    from engine.cache import ResultsCache, records_to_table
    from hypotheses.calibration import noise_prior, seeds_for_power
    from hypotheses.cells import cell_specs, cells_for
    from hypotheses.decide import decide_all, stability_text

    if not 0 < args.stability_target <= 1:
        raise ValueError(f"--stability-target must be in (0, 1], got {args.stability_target}")
    claims = _selected_claims(args.claims)
    cache = ResultsCache(args.cache_dir)
    print(f"| profile | claim | test case | seeds now | seeds for 80 % power | noise source | noise SDs | "
          f"verdict now | stability now | seeds for >= {args.stability_target:.0%} stable (outcome, probability) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for profile in _profiles(args.profile):
        # The verdicts (and their stability) the report would show: decided by the report's path.
        results = {(r.claim_id, r.cell_id): r for r in decide_all(profile, cache, claims)}
        for claim in claims.values():
            claim = claim.at_profile(profile)
            if (claim.id, "missing-design") in results:
                print(f"| {profile.name} | {claim.id} | - | - | - | - | - | "
                      f"{results[(claim.id, 'missing-design')].error} | - | - |", flush=True)
                continue
            metric = claim.threshold("metric")
            for cell in cells_for(claim, profile):
                specs = cell_specs(profile, cell)
                records = [r for r in (cache.get(s) for s in specs) if r is not None]
                noise = _cache_noise(records, metric)
                source = f"cache ({len(records)} runs)" if noise else "prior"
                noise = noise or noise_prior(profile, metric)
                need = seeds_for_power(claim, profile, cell, noise, args.draws)
                now = len({s.seed for s in specs})
                result = results.get((claim.id, cell.id))
                verdict, stable, seeds_stable = "-", "-", "-"
                if len(records) < len(specs):
                    verdict = f"runs missing ({len(specs) - len(records)} of {len(specs)})"
                elif result is None or result.verdict is None:
                    verdict = "error: " + (result.error if result else "not decided")
                else:
                    verdict, stable = result.verdict.outcome, stability_text(result.verdict.stability)
                    seeds_stable = _seeds_for_stability_text(claim, cell, records_to_table(records),
                                                             args.draws, args.stability_target)
                print(f"| {profile.name} | {claim.id} | {cell.id} | {now} | {need if need else '> 40'} | "
                      f"{source} | {noise.describe()} | {verdict} | {stable} | {seeds_stable} |", flush=True)
    return 0


def cmd_report(args) -> int:
    from hypotheses.report import build_report

    out = build_report(cache_dir=args.cache_dir, report_dir=args.report_dir, profile=args.profile,
                       decide=not args.no_decide)
    print(f"report written: {out}")
    return 0


def cmd_rules(args) -> int:
    """Every claim's rule as fixtures/claims.toml states it (the one place it is written)."""
    from hypotheses.claims import load_claims, rules_markdown

    claims = load_claims(args.claims_file)
    if args.markdown:
        print(rules_markdown(claims))
    else:
        for c in claims.values():
            print(f"{c.id}: {c.rule}" + (f"\n  premise: {c.premise}" if c.premise else "") + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hypotheses", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    profiles = f"one of {available_profiles()} or a path to a profile .toml (repeatable; default: all three)"

    c = sub.add_parser("calibrate", help="type-I error and power of every decision rule, by simulation")
    c.add_argument("--profile", action="append", help=profiles)
    c.add_argument("--claims", default="", help="comma-separated claim ids (default: all)")
    c.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help="simulated tables per scenario")
    c.add_argument("--out", type=Path, default=None, help=f"also write <profile>.json here (e.g. {CALIBRATION_DIR})")
    c.add_argument("--rho", type=float, default=DEFAULT_RHO,
                   help="arm-level correlation of seeds for the correlated-seed columns (0: skip them)")
    c.add_argument("--reliability", action="store_true",
                   help="also check the stability figure against simulated re-runs (reliability-<profile>.md)")
    c.add_argument("--reliability-datasets", type=int, default=100, help="datasets per known truth")
    c.add_argument("--reliability-draws", type=int, default=40, help="stability draws per dataset")
    c.set_defaults(func=cmd_calibrate)

    pl = sub.add_parser("plan", help="seeds needed for 80 %% power and for a stable verdict, per test case")
    pl.add_argument("--profile", action="append", help=profiles)
    pl.add_argument("--claims", default="", help="comma-separated claim ids (default: all)")
    pl.add_argument("--cache-dir", default=None,
                    help="results cache whose runs give the seed SDs, the verdicts now and their stability")
    pl.add_argument("--draws", type=int, default=200, help="simulated tables per seed count")
    pl.add_argument("--stability-target", type=float, default=STABILITY_TARGET,
                    help="probability of repeating an outcome that counts as stable (default %(default)s)")
    pl.set_defaults(func=cmd_plan)

    r = sub.add_parser("report", help="decide every claim from the cache (never trains) and write the report")
    r.add_argument("--profile", default=None, help="one of the profiles (default: the last suite run's)")
    r.add_argument("--cache-dir", default=None)
    r.add_argument("--report-dir", type=Path, default=Path("reports"))
    r.add_argument("--no-decide", action="store_true", help="only re-render from the verdicts.json in --report-dir")
    r.set_defaults(func=cmd_report)
    ru = sub.add_parser("rules", help="every claim's decision rule, as fixtures/claims.toml states it")
    ru.add_argument("--markdown", action="store_true", help="the block docs/claims.md carries")
    ru.add_argument("--claims-file", type=Path, default=None, help="default: fixtures/claims.toml")
    ru.set_defaults(func=cmd_rules)
    from hypotheses.compare import add_compare_parser

    add_compare_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "draws", 1) < 1:
        print("error: --draws must be >= 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ProfileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
