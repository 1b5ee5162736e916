"""The verdict report: `build_report(cache_dir, report_dir, profile)` gathers its inputs and writes it.

Owns the report's inputs and their summaries, not their drawing or layout:
- which profile the report covers (given, or the last suite run's from verdicts.json);
- the runs of every design of that profile, read from the cache (missing and unreadable
  runs are counted, never fatal: a report of a half-filled cache is still a report);
- the verdict rows of the last suite run (`report_dir/verdicts.json`, optional);
- the claims' statements and paper figures, read from `fixtures/claims.toml` as data (the
  engine does not import the claim layer);
- one `ClaimSummary` per claim (its cells' verdicts, our figure, runs, sizes) and the cache
  summary (runs used / missing / diverged, compute spent).
Figures are drawn by `engine.report_plots`, the pages laid out by `engine.report_page`.
The report only reads the cache: it never trains, quarantines or rewrites a record.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from engine.cache import CorruptRecordError, ResultsCache, records_to_table
from engine.design import Design, Profile, ProfileError, available_profiles, load_profile
from engine.spec import RunSpec

log = logging.getLogger(__name__)

CLAIMS_FILE = Path(__file__).resolve().parent.parent / "fixtures" / "claims.toml"
VERDICTS_FILE = "verdicts.json"  # written by hypotheses/plugin.py at the end of a suite run
SUMMARY_MD = "summary.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"

# Claim test functions are named test_c<N>_...; an error row carries only its node id.
_CLAIM_IN_NODEID = re.compile(r"::test_(c\d+)_", re.IGNORECASE)
_CELL_IN_NODEID = re.compile(r"\[(.*)\]$")


# --- inputs ---------------------------------------------------------------------------


@dataclass
class DesignData:
    """One design of the profile as the cache holds it right now."""

    design: Design
    records: dict[str, dict]  # run id -> full record, present runs only
    table: pd.DataFrame  # one row per present run (records_to_table)
    missing: list[RunSpec]
    corrupt: list[tuple[RunSpec, str]]  # unreadable records and why; reported, not fatal

    @property
    def name(self) -> str:
        return self.design.name

    @property
    def n_diverged(self) -> int:
        return int((self.table["status"] == "diverged").sum()) if len(self.table) else 0


@dataclass
class VerdictsInput:
    path: Path
    rows: list[dict]
    profile: str | None = None
    available: bool = False
    note: str = ""  # why verdicts are not shown, when they are not
    trained_run_ids: list[str] | None = None


def resolve_profile(profile: str | Path | None, report_dir: Path) -> Profile:
    """The profile named, else the one the last suite run recorded in verdicts.json."""
    if profile is not None:
        return load_profile(profile)
    path = report_dir / VERDICTS_FILE
    if not path.exists():
        raise ProfileError(
            f"no profile given and no {path} to take it from; pass --profile NAME "
            f"(one of {available_profiles()}, or a path to a profile .toml)"
        )
    payload = _read_verdicts_json(path)
    recorded = payload.get("profile_path")
    if recorded and Path(recorded).exists():
        return load_profile(Path(recorded))
    return load_profile(payload.get("profile") or "")


def _read_verdicts_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable verdicts file ({e}); rerun the suite or delete it") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("verdicts"), list):
        raise ValueError(f"{path}: not a verdicts file (no 'verdicts' list); rerun the suite or delete it")
    return payload


def load_verdicts(report_dir: Path, profile: Profile) -> VerdictsInput:
    path = report_dir / VERDICTS_FILE
    run_cmd = f"`pytest hypotheses/ --profile {profile.name}`"
    if not path.exists():
        return VerdictsInput(path, [], note=f"no suite run recorded; verdicts not available — run {run_cmd}")
    payload = _read_verdicts_json(path)
    recorded = payload.get("profile")
    trained = payload.get("trained_run_ids")
    out = VerdictsInput(path, [], recorded, trained_run_ids=list(trained) if isinstance(trained, list) else None)
    if recorded != profile.name:
        # Verdicts of another profile rest on other runs: showing them beside this
        # profile's runs and sizes would misattribute them.
        out.note = (f"{path} records a suite run of profile {recorded!r}, not {profile.name!r}; "
                    f"verdicts not shown — run {run_cmd}, or report with --profile {recorded}")
        return out
    out.rows = [_normalise_row(r) for r in payload["verdicts"] if isinstance(r, dict)]
    out.available = True
    return out


def _normalise_row(row: dict) -> dict:
    row = dict(row)
    nodeid = str(row.get("nodeid", ""))
    if not row.get("claim_id"):
        m = _CLAIM_IN_NODEID.search(nodeid)
        row["claim_id"] = m.group(1).upper() if m else "?"
    if not row.get("cell"):
        m = _CELL_IN_NODEID.search(nodeid)
        row["cell"] = m.group(1) if m else ""
    row.setdefault("verdict", "error" if row.get("pytest_outcome") == "error" else "undecided")
    return row


def load_claims_data(path: Path = CLAIMS_FILE) -> dict[str, dict]:
    """Claim id -> its table in claims.toml (statement, source, design, role, paper_*)."""
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        log.warning("claims file %s unreadable (%s); the report shows claim ids only", path, e)
        return {}


def load_designs(cache: ResultsCache, profile: Profile) -> dict[str, DesignData]:
    """Every design of the profile with its present, missing and unreadable runs."""
    seen: dict[str, dict | None | str] = {}  # run id -> record, None (missing) or error text
    out = {}
    for name, design in profile.designs.items():
        records, missing, corrupt = {}, [], []
        for spec in design.specs:
            rid = spec.run_id
            if rid not in seen:
                try:
                    seen[rid] = cache.get(spec)
                except CorruptRecordError as e:
                    seen[rid] = str(e)
            got = seen[rid]
            if isinstance(got, dict):
                records[rid] = got
            elif isinstance(got, str):
                corrupt.append((spec, got))
            else:
                missing.append(spec)
        out[name] = DesignData(design, records, records_to_table(records.values()), missing, corrupt)
    return out


def size_params(designs: dict[str, DesignData]) -> dict[str, int]:
    """Size name -> parameter count measured by its runs (first run found)."""
    out: dict[str, int] = {}
    for dd in designs.values():
        if len(dd.table) and "n_params" in dd.table:
            for size, n in dd.table.groupby("size")["n_params"].first().items():
                out.setdefault(size, int(n))
    return out


# --- claim summaries ----------------------------------------------------------------


def fmt_num(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if v == int(v) and abs(v) < 1e6:
            return str(int(v))
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return str(v)


def fmt_count(n: int | float | None) -> str:
    """19872 -> '19.9k', 17_059_912 -> '17.1M' (parameter counts at a glance)."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "n/a"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def main_figure(row: dict) -> str:
    """Our figure for one verdict row: the main statistic, p / CI, effect size."""
    parts = []
    if row.get("stat_statistic"):
        parts.append(f"{row['stat_statistic']} = {fmt_num(row.get('stat_statistic_value'))}")
    if row.get("stat_inside"):
        parts.append(f"inside {row['stat_inside']}")
    p, value = row.get("stat_p_value"), row.get("stat_statistic_value")
    if _finite(p) and not (_finite(value) and math.isclose(p, value)):  # a min-p statistic is its own p
        parts.append(f"p = {row['stat_p_value']:.3g}")
    if _finite(row.get("stat_ci_low")) and _finite(row.get("stat_ci_high")):
        parts.append(f"CI [{row['stat_ci_low']:.4g}, {row['stat_ci_high']:.4g}]")
    if row.get("stat_effect_size_name") and _finite(row.get("stat_effect_size")):
        parts.append(f"{row['stat_effect_size_name']} = {fmt_num(row['stat_effect_size'])}")
    return "; ".join(parts) or "n/a"


def paper_figure(claim: dict) -> str:
    parts = []
    for key, value in claim.items():
        if not key.startswith("paper_"):
            continue
        if isinstance(value, list):
            numeric = all(isinstance(x, (int, float)) for x in value)
            value = f"{value[0]}–{value[-1]}" if numeric and len(value) == 2 else ", ".join(map(str, value))
        parts.append(f"{key[len('paper_'):].replace('_', ' ')}: {value}")
    return "; ".join(parts) or "n/a"


@dataclass
class CellSummary:
    cell: str
    verdict: str  # reproduced | not_reproduced | undecided | error
    figure: str
    observed: str
    reason: str
    error: str
    n_seeds: int | None
    n_runs: int | None
    n_diverged: int | None
    nodeid: str


def cell_summary(row: dict) -> CellSummary:
    def count(key):
        v = row.get(key)
        return int(v) if _finite(v) else None

    return CellSummary(
        cell=str(row.get("cell", "")),
        verdict=str(row.get("verdict", "error")),
        figure=main_figure(row) if row.get("verdict") != "error" else "n/a",
        observed=str(row.get("observed", "")),
        reason=str(row.get("reason", "")),
        error=str(row.get("error", "")),
        n_seeds=count("stat_n_seeds"),
        n_runs=count("stat_n_runs"),
        n_diverged=count("stat_n_diverged"),
        nodeid=str(row.get("nodeid", "")),
    )


@dataclass
class ClaimSummary:
    claim_id: str
    statement: str
    source: str
    paper: str
    designs: list[str]
    sizes: list[tuple[str, int | None]]  # the sizes behind the claim in this profile
    plot: str | None  # name of its plot (engine.report_plots), if any
    cells: list[CellSummary] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """Aggregate over cells: an error or a failed cell decides; 'not_run' without rows."""
        kinds = [c.verdict for c in self.cells]
        for kind in ("error", "not_reproduced", "undecided"):
            if kind in kinds:
                return kind
        return "reproduced" if kinds else "not_run"

    @property
    def n_reproduced(self) -> int:
        return sum(c.verdict == "reproduced" for c in self.cells)

    def total(self, attr: str) -> int | None:
        vals = [getattr(c, attr) for c in self.cells if getattr(c, attr) is not None]
        if not vals:
            return None
        return max(vals) if attr == "n_seeds" else sum(vals)


def claim_sizes(claim: dict, profile: Profile, params: dict[str, int]) -> list[tuple[str, int | None]]:
    sizes: list[str] = []
    for d in str(claim.get("design", "")).split("+"):
        if d in profile.designs:
            sizes += [s for s in profile.designs[d].sizes if s not in sizes]
    role = claim.get("role")
    if role and role in profile.roles:
        sizes = [s for s in sizes if s in profile.roles[role]]
    return [(s, params.get(s)) for s in sizes]


def _natural(text: str) -> list:
    """Sort key that puts t20k before t100k (xdist reports cells in completion order)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def summarise_claims(claims: dict[str, dict], rows: list[dict], profile: Profile,
                     params: dict[str, int], plot_for_design) -> list[ClaimSummary]:
    """One summary per claim in claims.toml order, then any claim id only the verdicts name."""
    ids = [k for k, v in claims.items() if isinstance(v, dict)]
    ids += sorted({r["claim_id"] for r in rows} - set(ids))
    out = []
    for cid in ids:
        c = claims.get(cid, {})
        design = str(c.get("design", ""))
        out.append(ClaimSummary(
            claim_id=cid,
            statement=str(c.get("statement", "(not in fixtures/claims.toml)")),
            source=str(c.get("source", "")),
            paper=paper_figure(c),
            designs=[d for d in design.split("+") if d],
            sizes=claim_sizes(c, profile, params),
            plot=plot_for_design(design) if design else None,
            cells=sorted((cell_summary(r) for r in rows if r["claim_id"] == cid), key=lambda c: _natural(c.cell)),
        ))
    return out


# --- cache summary --------------------------------------------------------------------


@dataclass
class CacheSummary:
    root: Path
    runs_used: int  # distinct runs of the profile present in the cache
    runs_expected: int
    diverged: list[tuple[str, dict]]  # (design, record)
    tokens: int
    train_s: float
    wall_s: float
    devices: list[str]


def summarise_cache(cache: ResultsCache, designs: dict[str, DesignData]) -> CacheSummary:
    present: dict[str, dict] = {}
    expected: set[str] = set()
    diverged: list[tuple[str, dict]] = []
    for name, dd in designs.items():
        expected |= {s.run_id for s in dd.design.specs}
        for rid, rec in dd.records.items():
            if rid not in present and rec["result"].get("status") == "diverged":
                diverged.append((name, rec))
            present.setdefault(rid, rec)

    def total(key):
        return sum(float(r["result"].get(key) or 0.0) for r in present.values())

    devices = sorted({str(r["result"].get("device")) for r in present.values() if r["result"].get("device")})
    return CacheSummary(cache.root, len(present), len(expected), diverged, int(total("tokens_seen")),
                        total("train_time_s"), total("wall_time_s"), devices)


# --- entry ----------------------------------------------------------------------------


def build_report(cache_dir: Path | str | None, report_dir: Path | str, profile: str | Path | None) -> Path:
    """Write report_dir/summary.md, report_dir/report.html (one self-contained file: PNGs
    embedded as data URIs, inline CSS, nothing fetched) and report_dir/plots/*.png; return
    the path of report.html.

    `profile` is a profile name or .toml path; None takes it from report_dir/verdicts.json
    and is an error naming the fix (--profile NAME) when there is none.
    """
    from engine import report_page, report_plots

    report_dir = Path(report_dir)
    prof = resolve_profile(profile, report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    cache = ResultsCache(cache_dir)
    verdicts = load_verdicts(report_dir, prof)
    designs = load_designs(cache, prof)
    params = size_params(designs)
    claims_data = load_claims_data()
    claims = summarise_claims(claims_data, verdicts.rows, prof, params, report_plots.plot_for_design)
    plots = report_plots.draw_all(designs, prof, params, claims_data, report_dir / PLOTS_DIR)
    ctx = report_page.PageContext(
        profile=prof,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        verdicts=verdicts,
        claims=claims,
        designs=designs,
        cache=summarise_cache(cache, designs),
        plots=plots,
        params=params,
    )
    (report_dir / SUMMARY_MD).write_text(report_page.render_markdown(ctx))
    out = report_dir / REPORT_HTML
    out.write_text(report_page.render_html(ctx))
    log.info("report written: %s", out)
    return out
