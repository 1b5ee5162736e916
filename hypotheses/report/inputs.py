"""The report's inputs and their summaries: what the pages and figures are made of.

Owns, not the drawing or the layout:
- which profile the report covers (given, or the last suite run's from verdicts.json);
- the verdict rows: given (the pytest plugin passes its own), decided here from the cache
  alone (``hypotheses.decide.decide_all``, never trains; written to verdicts.json in the
  plugin's format), or re-read from an earlier verdicts.json;
- the runs of every design of that profile, read from the cache (missing and unreadable
  runs are counted, never fatal: a report of a half-filled cache is still a report);
- the claims (``hypotheses.claims.load_claims``): statements, sources, paper figures;
- one ``ClaimSummary`` per claim (its cells' verdicts with bounds, stability, seeds),
  the cache summary (runs used / missing / diverged, compute spent) and the calibration
  table of the profile, when one was written.
The report only reads the cache: it never trains, quarantines or rewrites a record.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from engine.cache import CorruptRecordError, ResultsCache, records_to_table
from engine.design import Design, Profile, ProfileError, available_profiles, load_profile
from engine.spec import RunSpec
from hypotheses.claims import Claim
from hypotheses.groupstats import as_float  # noqa: F401 (the report imports it from here)
from hypotheses.decide import decide_all, verdict_row
from hypotheses.verdict import (
    CONTRADICTED,
    INCONCLUSIVE,
    INCONCLUSIVE_PREMISE,
    INCONCLUSIVE_SEEDS,
    PREMISE_ABSENT_REASON,
    REPRODUCED,
)

log = logging.getLogger(__name__)

VERDICTS_FILE = "verdicts.json"  # same name and format as hypotheses/plugin.py writes
SUMMARY_MD = "summary.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
CALIBRATION_DIR = "calibration"  # report_dir/calibration/<profile>.json (python -m hypotheses calibrate --out)

ERROR = "error"
OUTCOMES = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, ERROR)  # every count is over these four
NOT_RUN = "not_run"  # a claim with no row at all


# --- formatting ------------------------------------------------------------------------


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


def fmt_bpb(v: float | None) -> str:
    """Every statistic, bound, region edge and δ of a verdict (bits per byte; C9's a ratio):
    4 decimals, the resolution of the smallest δ in any profile (0.001)."""
    return "n/a" if v is None else f"{v:.4f}"


def fmt_pct(p: float | None) -> str:
    """Every percentage of the report (stabilities, levels, shares): '42 %', '97.5 %'."""
    return "n/a" if p is None else f"{round(100 * p, 1):g} %"


def fmt_ci(level: float | None) -> str:
    """The one name the report gives a verdict's interval: two-sided, at its level."""
    return "CI (level not reported)" if level is None else f"{fmt_pct(level)} CI"


def column_level(cells) -> float | None:
    """The level a table column of bounds is labelled with: its cells' most common one (a
    cell at another level says so beside its bounds)."""
    levels = [c.ci_level for c in cells if c.ci_level is not None and c.ci_low is not None]
    return max(sorted(set(levels)), key=levels.count) if levels else None


# --- the region a claim predicts -------------------------------------------------------------

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclass(frozen=True)
class Region:
    """A verdict's ``region`` string ('[-0.025, 0.025]', '> 0.025', '<= 0.025') as numbers."""

    low: float  # -inf when open below
    high: float  # +inf when open above
    text: str

    @property
    def edges(self) -> list[float]:
        return [e for e in (self.low, self.high) if math.isfinite(e)]

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def holds(self, lo: float, hi: float) -> bool:
        return self.low <= lo and hi <= self.high

    def excludes(self, lo: float, hi: float) -> bool:
        return hi < self.low or lo > self.high


def parse_region(text: str) -> Region | None:
    """None for a region the report cannot read (it is then shown only as text)."""
    t = (text or "").strip()
    m = re.fullmatch(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*\]", t)
    if m:
        return Region(float(m.group(1)), float(m.group(2)), t)
    m = re.fullmatch(rf"(<=|<|>=|>)\s*({_NUM})", t)
    if m:
        edge = float(m.group(2))
        return Region(edge, math.inf, t) if m.group(1).startswith(">") else Region(-math.inf, edge, t)
    return None


# --- designs in the cache ----------------------------------------------------------------


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


# --- verdict rows ------------------------------------------------------------------------


@dataclass
class VerdictsInput:
    path: Path
    rows: list[dict]
    source: str = ""  # where the rows come from, in words
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


def _test_function(nodeid: str) -> str:
    return nodeid.split("[", 1)[0]


def normalise_rows(rows: list[dict]) -> list[dict]:
    """Rows as the report reads them: every row has claim_id, cell and verdict.

    A row states its claim and cell (``decide.verdict_row``); the plugin's error rows for a
    failed setup carry only their node id, so they take the claim of a sibling case of the
    same test function, or stay unattributed ('?') and are listed on their own."""
    rows = [dict(r) for r in rows if isinstance(r, dict)]
    claim_of_test = {_test_function(str(r["nodeid"])): r["claim_id"]
                     for r in rows if r.get("nodeid") and r.get("claim_id")}
    for row in rows:
        nodeid = str(row.get("nodeid", ""))
        if not row.get("claim_id"):
            row["claim_id"] = claim_of_test.get(_test_function(nodeid), "?") if nodeid else "?"
        if not row.get("cell"):
            row["cell"] = nodeid
        if row.get("verdict") not in OUTCOMES:
            row["verdict"] = ERROR
            row.setdefault("error", "row without a verdict (pytest outcome "
                                    f"{row.get('pytest_outcome', 'unknown')})")
    return rows


def load_verdicts(report_dir: Path, profile: Profile) -> VerdictsInput:
    """The rows of report_dir/verdicts.json, if they are of this profile."""
    path = report_dir / VERDICTS_FILE
    how = (f"`python -m hypotheses report --profile {profile.name}` (decides from the cache) or "
           f"`pytest hypotheses/ --qat-profile {profile.name}`")
    if not path.exists():
        return VerdictsInput(path, [], note=f"no verdicts recorded in {path}; verdicts not available — run {how}")
    payload = _read_verdicts_json(path)
    recorded = payload.get("profile")
    trained = payload.get("trained_run_ids")
    out = VerdictsInput(path, [], f"the verdicts recorded in {path}", recorded,
                        trained_run_ids=list(trained) if isinstance(trained, list) else None)
    if recorded != profile.name:
        # Verdicts of another profile rest on other runs: showing them beside this
        # profile's runs and sizes would misattribute them.
        out.note = (f"{path} records verdicts of profile {recorded!r}, not {profile.name!r}; "
                    f"verdicts not shown — run {how}, or report with --profile {recorded}")
        return out
    out.rows = normalise_rows(payload["verdicts"])
    out.available = True
    return out


class _ReadOnlyCache:
    """The cache as ``decide_all`` reads it: an unreadable record is a missing run (the
    cache section lists it), never a quarantine or a crash of the whole report."""

    def __init__(self, cache: ResultsCache):
        self.cache = cache
        self.root = cache.root  # the missing-runs hint names this cache

    def get(self, spec: RunSpec) -> dict | None:
        try:
            return self.cache.get(spec)
        except CorruptRecordError:
            return None


def decide_rows(profile: Profile, cache: ResultsCache, claims: dict[str, Claim]) -> list[dict]:
    """Every cell of every claim decided from the cache alone, as verdict rows."""
    rows = []
    for res in decide_all(profile, _ReadOnlyCache(cache), claims):
        if res.verdict is None:
            rows.append({"claim_id": res.claim_id, "cell": res.cell_id, "verdict": ERROR, "error": res.error,
                         "profile": profile.name})
        else:
            rows.append(verdict_row(res.verdict, profile, res.cell_id))
    return rows


def write_verdicts(report_dir: Path, profile: Profile, rows: list[dict], trained: list[str] | None = None) -> Path:
    """verdicts.json in the plugin's format."""
    path = report_dir / VERDICTS_FILE
    payload = {"profile": profile.name, "profile_path": str(profile.path), "verdicts": rows,
               "trained_run_ids": list(trained or [])}
    path.write_text(json.dumps(payload, indent=1, default=str))
    return path


# --- claim summaries ------------------------------------------------------------------


def paper_figure(claim: Claim | None) -> str:
    parts = []
    for key, value in (claim.paper.items() if claim else ()):
        if isinstance(value, list):
            numeric = all(isinstance(x, (int, float)) for x in value)
            value = f"{value[0]}–{value[-1]}" if numeric and len(value) == 2 else ", ".join(map(str, value))
        parts.append(f"{key.removeprefix('paper_').replace('_', ' ')}: {value}")
    return "; ".join(parts) or "n/a"


@dataclass
class CellSummary:
    """One verdict row, read for display."""

    cell: str
    verdict: str  # reproduced | contradicted | inconclusive | error
    profile: str
    statistic: str
    value: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    ci_level: float | None
    region: str
    stability: float | None
    fragile: bool
    seeds: str
    n_seeds: int | None
    n_runs: int | None
    n_diverged: int | None
    observed: str
    reason: str
    error: str
    nodeid: str
    inconclusive_kind: str = ""  # 'premise' (not testable here) | 'seeds' (too few seeds) | '' when decided
    mcb_best_set: str = ""  # C1: the warmdowns that cannot be excluded as best (Hsu's MCB)
    bits_substitution: str = ""  # the profile tests other bit-widths than the paper's (e.g. tiny: INT6 -> INT3)
    # P(outcome) of a re-run, where the row carries it (keys stability_<outcome>); else only
    # the probability of its own outcome (``stability``) is known.
    rerun: dict[str, float] = field(default_factory=dict)

    @property
    def has_bounds(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None

    @property
    def statistic_text(self) -> str:
        if self.verdict == ERROR or not self.statistic:
            return "n/a"
        text = f"{self.statistic} = {fmt_bpb(self.value)}"
        return text + (f" (δ = {fmt_bpb(self.delta)})" if self.delta is not None else "")

    def bounds_text(self, column_level: float | None = None) -> str:
        """'[lo, hi]; claim predicts R', the level named only where it is not the column's."""
        if self.verdict == ERROR:
            return "n/a"
        if not self.has_bounds:
            return f"no bounds; claim predicts {self.region or 'n/a'}"
        level = f" ({fmt_ci(self.ci_level)})" if self.ci_level != column_level else ""
        return f"[{fmt_bpb(self.ci_low)}, {fmt_bpb(self.ci_high)}]{level}; claim predicts {self.region or 'n/a'}"

    @property
    def stability_text(self) -> str:
        return fmt_pct(self.stability) + (" FRAGILE" if self.fragile else "")

    def why_inconclusive(self) -> str:
        """Why bounds the reader may take for decisive (e.g. a CI wholly below 0) decide
        nothing, in words, and which outcome a re-run most likely gives; '' where the
        reason alone says it (premise absent, no bounds)."""
        if self.verdict != INCONCLUSIVE or self.inconclusive_kind == INCONCLUSIVE_PREMISE or not self.has_bounds:
            return ""
        region = parse_region(self.region)
        if region is None:
            return ""
        lo, hi = self.ci_low, self.ci_high
        ci = f"{fmt_ci(self.ci_level)} [{fmt_bpb(lo)}, {fmt_bpb(hi)}]"
        sign = "below" if hi < 0 else "above" if lo > 0 else ""
        crossed = " and ".join(fmt_bpb(e) for e in region.edges if lo < e < hi)
        if crossed and sign:
            why = (f"Its {ci} lies wholly {sign} 0, so the data show a direction; but the claim predicts "
                   f"{region.text}, not a sign, and the interval crosses the region's edge {crossed}: part inside, "
                   "part outside, so it is neither wholly inside (reproduced) nor wholly outside (contradicted).")
        elif crossed:
            why = (f"Its {ci} crosses the edge {crossed} of the region the claim predicts ({region.text}): part "
                   "inside, part outside, so it is neither wholly inside (reproduced) nor wholly outside "
                   "(contradicted).")
        else:
            where = "inside" if region.holds(lo, hi) else "wholly outside" if region.excludes(lo, hi) else "on the edge of"
            why = (f"Its {ci} lies {where} {region.text}, but the rule decides on more than this interval (its "
                   "reason says what).")
        return f"{why} {self._rerun_text(region)}"

    def _rerun_text(self, region: Region) -> str:
        if self.rerun:
            likely = max(sorted(self.rerun), key=self.rerun.__getitem__)
            return f"A re-run with new seeds most likely gives {likely} ({fmt_pct(self.rerun[likely])})."
        if self.stability is None:
            return ""
        if self.stability >= 0.5:
            return (f"A re-run with new seeds most likely gives inconclusive again (stability "
                    f"{fmt_pct(self.stability)}).")
        text = (f"A re-run with new seeds repeats inconclusive with probability {fmt_pct(self.stability)} only, so "
                "it more likely decides; the verdict records the probability of its own outcome, not how the rest "
                "splits between reproduced and contradicted")
        if self.value is None:
            return text + "."
        inside = region.contains(self.value)
        return (text + f". Its statistic {fmt_bpb(self.value)} lies {'inside' if inside else 'outside'} the region, "
                f"so the nearer decided outcome is {REPRODUCED if inside else CONTRADICTED}.")


def cell_summary(row: dict) -> CellSummary:
    def count(key):
        v = as_float(row.get(key))
        return int(v) if v is not None else None

    fragile = row.get("fragile")
    return CellSummary(
        cell=str(row.get("cell", "")),
        verdict=str(row.get("verdict", ERROR)),
        profile=str(row.get("profile", "")),
        statistic=str(row.get("stat_statistic") or ""),
        value=as_float(row.get("stat_statistic_value")),
        delta=as_float(row.get("stat_delta")),
        ci_low=as_float(row.get("stat_ci_low")),
        ci_high=as_float(row.get("stat_ci_high")),
        ci_level=as_float(row.get("stat_ci_level")),
        region=str(row.get("stat_region") or ""),
        stability=as_float(row.get("stability")),
        fragile=str(fragile).strip().lower() in ("1", "1.0", "true"),
        seeds=str(row.get("stat_seeds") or ""),
        n_seeds=count("stat_n_seeds"),
        n_runs=count("stat_n_runs"),
        n_diverged=count("stat_n_diverged"),
        observed=str(row.get("observed") or ""),
        reason=str(row.get("reason") or ""),
        error=str(row.get("error") or ""),
        nodeid=str(row.get("nodeid") or ""),
        inconclusive_kind=inconclusive_kind(row),
        mcb_best_set=str(row.get("stat_mcb_best_set") or ""),
        bits_substitution=str(row.get("stat_bits_substitution") or ""),
        rerun={k: p for k in (REPRODUCED, CONTRADICTED, INCONCLUSIVE)
               if (p := as_float(row.get(f"stability_{k}"))) is not None},
    )


def inconclusive_kind(row: dict) -> str:
    """'premise' (not testable here: the claim's premise is absent at this profile), 'seeds'
    (too few seeds: more could decide) or '' for a decided row. Rows written before the
    verdicts carried ``inconclusive_kind`` are read from their reason's prefix."""
    if str(row.get("verdict")) != INCONCLUSIVE:
        return ""
    kind = str(row.get("stat_inconclusive_kind") or "")
    if kind == INCONCLUSIVE_PREMISE or str(row.get("reason") or "").startswith(PREMISE_ABSENT_REASON):
        return INCONCLUSIVE_PREMISE
    return INCONCLUSIVE_SEEDS


def outcome_counts(verdicts: list[str]) -> dict[str, int]:
    return {k: verdicts.count(k) for k in OUTCOMES}


def inconclusive_counts(cells: list["CellSummary"]) -> dict[str, int]:
    """The inconclusive cells split by kind: {'premise': not testable here, 'seeds': too few seeds}."""
    kinds = [c.inconclusive_kind for c in cells if c.verdict == INCONCLUSIVE]
    return {INCONCLUSIVE_PREMISE: kinds.count(INCONCLUSIVE_PREMISE), INCONCLUSIVE_SEEDS: kinds.count(INCONCLUSIVE_SEEDS)}


@dataclass
class ClaimSummary:
    claim_id: str
    statement: str
    source: str
    paper: str
    designs: list[str]
    sizes: list[tuple[str, int | None]]  # the sizes behind the claim in this profile
    plots: list[str]  # names of its figures (hypotheses.report.plots)
    cells: list[CellSummary] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return outcome_counts([c.verdict for c in self.cells])

    @property
    def verdict(self) -> str:
        """Aggregate over cells: an error, then a contradiction, then an inconclusive cell
        decides; all reproduced is reproduced; 'not_run' without rows."""
        kinds = [c.verdict for c in self.cells]
        for kind in (ERROR, CONTRADICTED, INCONCLUSIVE):
            if kind in kinds:
                return kind
        return REPRODUCED if kinds else NOT_RUN

    @property
    def n_fragile(self) -> int:
        return sum(c.fragile for c in self.cells)

    def total(self, attr: str) -> int | None:
        vals = [getattr(c, attr) for c in self.cells if getattr(c, attr) is not None]
        if not vals:
            return None
        return max(vals) if attr == "n_seeds" else sum(vals)


def claim_sizes(claim: Claim, profile: Profile, params: dict[str, int]) -> list[tuple[str, int | None]]:
    sizes: list[str] = []
    for d in claim.designs:
        if d in profile.designs:
            sizes += [s for s in profile.designs[d].sizes if s not in sizes]
    if claim.role and claim.role in profile.roles:
        sizes = [s for s in sizes if s in profile.roles[claim.role]]
    return [(s, params.get(s)) for s in sizes]


def natural_key(text: str) -> list:
    """Sort key that puts t20k before t100k (xdist reports cells in completion order)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def summarise_claims(claims: dict[str, Claim], rows: list[dict], profile: Profile, params: dict[str, int],
                     plots_of) -> list[ClaimSummary]:
    """One summary per claim in claims.toml order, then any claim id only the rows name."""
    ids = list(claims) + sorted({r["claim_id"] for r in rows} - set(claims))
    out = []
    for cid in ids:
        c = claims.get(cid)
        out.append(ClaimSummary(
            claim_id=cid,
            statement=c.statement if c else ("rows not attributed to a claim" if cid == "?" else
                                             "(not in fixtures/claims.toml)"),
            source=c.source if c else "",
            paper=paper_figure(c),
            designs=c.designs if c else [],
            sizes=claim_sizes(c, profile, params) if c else [],
            plots=plots_of(cid),
            cells=sorted((cell_summary(r) for r in rows if r["claim_id"] == cid), key=lambda s: natural_key(s.cell)),
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
    train_s: float  # device time: each pack's once
    wall_s: float  # wall time: each pack's once
    devices: list[str]
    n_packed: int = 0  # runs trained in a pack of more than one


def pack_share(result: dict) -> float:
    """The share of a record's times that is its own: every run of a pack of K records the
    whole pack's train_time_s (engine.runlog) and ``packed: K``, so K records count it once."""
    k = as_float(result.get("packed"))
    return 1.0 / k if k is not None and k >= 1 else 1.0


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

    def total(key, per_pack=False):
        return sum(float(r["result"].get(key) or 0.0) * (pack_share(r["result"]) if per_pack else 1.0)
                   for r in present.values())

    devices = sorted({str(r["result"].get("device")) for r in present.values() if r["result"].get("device")})
    n_packed = sum(pack_share(r["result"]) < 1.0 for r in present.values())
    return CacheSummary(cache.root, len(present), len(expected), diverged, int(total("tokens_seen")),
                        total("train_time_s", per_pack=True), total("wall_time_s", per_pack=True), devices, n_packed)


# --- calibration ------------------------------------------------------------------------


# The slack over alpha that tests/hypotheses/test_calibration.py allows a simulated error
# rate (its SLACK; a test of the report pins the two equal): the report states the bound
# the table is held to, not alpha alone beside rates the test accepts above it.
CALIBRATION_SLACK = 0.03
CALIBRATION_TEST = "tests/hypotheses/test_calibration.py"


@dataclass
class CalibrationInput:
    """The profile's calibration table (``python -m hypotheses calibrate --out DIR``), if written."""

    path: Path
    how: str  # the command that writes it here
    rows: list[dict] = field(default_factory=list)
    command: str = ""  # the command that produced it (recorded in the file)
    draws: int | None = None
    note: str = ""  # why there is no table
    alpha: dict[str, float] = field(default_factory=dict)  # claim id -> its alpha (fixtures/claims.toml)
    slack: float = CALIBRATION_SLACK

    @property
    def available(self) -> bool:
        return bool(self.rows)

    def bound(self, claim_id: str) -> float | None:
        """The most a type-I error rate of this claim may be for the calibration test to pass."""
        a = self.alpha.get(claim_id)
        return None if a is None else a + self.slack


def load_calibration(report_dir: Path, profile: Profile, claims: dict[str, Claim] | None = None) -> CalibrationInput:
    directory = report_dir / CALIBRATION_DIR
    path = directory / f"{profile.name}.json"
    how = f"python -m hypotheses calibrate --profile {profile.name} --out {directory}"
    alpha = {cid: a for cid, c in (claims or {}).items() if (a := as_float(c.thresholds.get("alpha"))) is not None}
    out = CalibrationInput(path, how, alpha=alpha)
    if not path.exists():
        out.note = f"no calibration table for profile {profile.name!r} at {path}"
        return out
    try:
        payload = json.loads(path.read_text())
        rows = [r for r in payload["rows"] if isinstance(r, dict)]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        out.note = f"{path} is unreadable ({type(e).__name__}: {e}); write it again"
        return out
    if payload.get("profile") not in (None, profile.name):
        out.note = f"{path} is the calibration of profile {payload.get('profile')!r}, not {profile.name!r}"
        return out
    out.rows, out.command = rows, str(payload.get("command") or "")
    out.draws = payload.get("draws") if isinstance(payload.get("draws"), int) else None
    if not rows:
        out.note = f"{path} holds no rows"
    return out
