"""The verdict report: ``build_report(cache_dir, report_dir, profile)`` gathers its inputs and writes it.

The report belongs to the claim layer (the engine never judges): it shows the verdicts
with their bounds, stability and seeds, and figures whose numbers are the deciders'.

- ``inputs``: the profile, the verdict rows (given, decided from the cache, or re-read),
  the cache's runs, the claims, the calibration table, and their summaries;
- ``plots``: the figures (claim ids -> drawing function) and the overview forest plot of every
  test case, numbers read from the rows;
- ``page``: the layout of ``summary.md`` and the self-contained ``report.html``.

Entry points: ``python -m hypotheses report`` and the pytest plugin at the end of a suite run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from engine.cache import ResultsCache
from hypotheses.claims import load_claims
from hypotheses.report import page, plots
from hypotheses.report.inputs import (
    PLOTS_DIR,
    REPORT_HTML,
    SUMMARY_MD,
    VERDICTS_FILE,
    VerdictsInput,
    decide_rows,
    load_calibration,
    load_designs,
    load_verdicts,
    normalise_rows,
    resolve_profile,
    size_params,
    summarise_cache,
    summarise_claims,
    write_verdicts,
)

__all__ = ["build_report", "REPORT_HTML", "SUMMARY_MD", "VERDICTS_FILE", "PLOTS_DIR"]

log = logging.getLogger(__name__)


def build_report(cache_dir: Path | str | None, report_dir: Path | str, profile: str | Path | None,
                 decide: bool = True, rows: list[dict] | None = None, claims_file: str | Path | None = None) -> Path:
    """Write report_dir/summary.md, report_dir/report.html (one self-contained file: PNGs
    embedded as data URIs, inline CSS, nothing fetched) and report_dir/plots/*.png; return
    the path of report.html.

    Where the verdicts come from:
    - ``rows`` given (the pytest plugin passes the rows it collected): those;
    - else ``decide=True``: every cell decided from the cache alone (never trains), written
      to report_dir/verdicts.json in the plugin's format;
    - else (``decide=False``): re-rendered from the verdicts.json already in report_dir.
    ``profile`` is a profile name or .toml path; None takes it from report_dir/verdicts.json
    and is an error naming the fix (--profile NAME) when there is none. ``claims_file``: the
    claims the verdicts are of (the suite's --qat-claims; default fixtures/claims.toml).
    """
    report_dir = Path(report_dir)
    prof = resolve_profile(profile, report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    cache = ResultsCache(cache_dir)
    claims = load_claims(claims_file) if claims_file else load_claims()
    if rows is not None:
        verdicts = VerdictsInput(report_dir / VERDICTS_FILE, normalise_rows(rows), "the rows of this suite run",
                                 prof.name, available=True, trained_run_ids=_trained(report_dir, prof))
    elif decide:
        decided = decide_rows(prof, cache, claims)
        path = write_verdicts(report_dir, prof, decided)
        verdicts = VerdictsInput(path, normalise_rows(decided), f"decided from the cache alone (written to {path})",
                                 prof.name, available=True, trained_run_ids=[])
    else:
        verdicts = load_verdicts(report_dir, prof)
    designs = load_designs(cache, prof)
    params = size_params(designs)
    figures = plots.draw_all(claims, verdicts.rows, designs, prof, params, report_dir / PLOTS_DIR)
    summaries = summarise_claims(claims, verdicts.rows, prof, params, plots.plots_for_claim)
    ctx = page.PageContext(
        profile=prof,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        verdicts=verdicts,
        claims=summaries,
        designs=designs,
        cache=summarise_cache(cache, designs),
        plots=figures,
        calibration=load_calibration(report_dir, prof, claims),
        params=params,
        overview=plots.overview_figure(summaries, report_dir / PLOTS_DIR),
    )
    (report_dir / SUMMARY_MD).write_text(page.render_markdown(ctx))
    out = report_dir / REPORT_HTML
    out.write_text(page.render_html(ctx))
    log.info("report written: %s", out)
    return out


def _trained(report_dir: Path, prof) -> list[str] | None:
    """The runs the suite run trained, as its verdicts.json (written just before) records them."""
    try:
        return load_verdicts(report_dir, prof).trained_run_ids
    except ValueError:
        return None
