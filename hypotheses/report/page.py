"""The report's pages: what `summary.md` and `report.html` say, and how each is written.

Owns the layout only. `page_blocks(ctx)` lays the report out once, as a short list of
blocks (headings, paragraphs, tables, figures) holding inline pieces (text, code, links,
verdict badges); `render_markdown` and `render_html` write that same list, so the two
pages cannot drift apart. The Markdown page links figures as `plots/NAME.png`; the HTML
page is one self-contained file: inline CSS, every PNG embedded as a base64 data URI,
and no link or source that leaves the file (links are in-page anchors).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from engine.design import Profile
from hypotheses.report.inputs import (
    ERROR,
    NOT_RUN,
    OUTCOMES,
    CacheSummary,
    CalibrationInput,
    CALIBRATION_TEST,
    CellSummary,
    ClaimSummary,
    DesignData,
    VerdictsInput,
    as_float,
    column_level,
    fmt_bpb,
    fmt_ci,
    fmt_count,
    fmt_num,
    fmt_pct,
    inconclusive_counts,
    outcome_counts,
)
from hypotheses.report.plots import Plot
from hypotheses.verdict import FRAGILE_BELOW

TITLE = "QAT schedule × bit-width: verdict report"
VERDICT_TEXT = {
    "reproduced": "reproduced",
    "contradicted": "CONTRADICTED",
    "inconclusive": "inconclusive",
    ERROR: "ERROR",
    NOT_RUN: "no verdict",
}
BAD_NEWS = ("contradicted", ERROR, "fragile")  # bold in Markdown


@dataclass
class PageContext:
    profile: Profile
    generated: str
    verdicts: VerdictsInput
    claims: list[ClaimSummary]
    designs: dict[str, DesignData]
    cache: CacheSummary
    plots: list[Plot]
    calibration: CalibrationInput
    params: dict[str, int] = field(default_factory=dict)
    overview: Plot | None = None  # every test case against its region, at the top


# --- the document model -------------------------------------------------------------
# Inline: str | Code | Em | Badge | Link | Br | list of those.


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Em:
    text: str


@dataclass(frozen=True)
class Badge:  # a verdict, coloured in HTML, bold in Markdown when it is bad news
    kind: str
    text: str


@dataclass(frozen=True)
class Link:
    body: object
    anchor: str = ""  # in-page target (both pages)
    plot: str = ""  # a figure: plots/NAME.png in Markdown, its embedded copy in HTML


@dataclass(frozen=True)
class Br:
    """A line break inside a table cell (`<br>` in both Markdown and HTML)."""


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    body: object
    cls: str = ""


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[object]]


@dataclass(frozen=True)
class Image:
    plot: Plot


@dataclass(frozen=True)
class Bullets:
    items: list[object]


# --- layout ---------------------------------------------------------------------------


def _badge(kind: str, extra: str = "") -> Badge:
    return Badge(kind, VERDICT_TEXT.get(kind, kind) + extra)


def _runs(n_seeds, n_runs, n_diverged) -> str:
    if n_runs is None:
        return "n/a"
    return f"{fmt_num(n_seeds)} seeds, {fmt_num(n_runs)} runs, {fmt_num(n_diverged)} diverged"


def counts_text(counts: dict[str, int]) -> str:
    """All four outcomes, always in the same order (a zero is news too)."""
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in OUTCOMES)


def inconclusive_text(cells: list[CellSummary]) -> str:
    """The inconclusive cases split: not testable here (premise absent) vs too few seeds."""
    n = inconclusive_counts(cells)
    return f"{n['premise']} not testable here (premise absent), {n['seeds']} too few seeds"


def _plot_links(names: list[str], plots: dict[str, Plot]) -> list:
    links = []
    for name in names:
        if name in plots:
            p = plots[name]
            links.append(Link(name, plot=name) if p.path else Link(f"{name} (skipped)", anchor=f"plot-{name}"))
    return _join(links) if links else ["—"]


def _verdict_cell(c: CellSummary) -> object:
    out: list = [_badge(c.verdict)]
    if c.fragile:
        out += [" ", Badge("fragile", "FRAGILE")]
    if c.verdict == ERROR:
        out += [": ", Code(c.error or "(no message)")]
    return out


def _stability(c: CellSummary) -> object:
    if c.verdict == ERROR:
        return "n/a"
    return fmt_pct(c.stability)  # the FRAGILE flag sits beside the verdict


def _scale(profile: Profile, claim: ClaimSummary) -> str:
    sizes = ", ".join(f"{s} ({fmt_count(n)})" for s, n in claim.sizes) or "no sizes in this profile"
    return f"{profile.name}: {sizes}"


def _claim_stability(c: ClaimSummary) -> object:
    vals = [x.stability for x in c.cells if x.stability is not None and x.verdict != ERROR]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return fmt_pct(vals[0])  # a single cell's FRAGILE flag sits beside its verdict
    text = f"min {fmt_pct(min(vals))} over {len(vals)} cells"
    return [text, ", ", Badge("fragile", f"{c.n_fragile} FRAGILE")] if c.n_fragile else text


def _bounds_header(level: float | None) -> str:
    return f"bounds: {fmt_ci(level)} unless marked" if level is not None else "bounds"


def summary_blocks(ctx: PageContext, plots: dict[str, Plot]) -> list:
    rows = []
    level = column_level([cell for c in ctx.claims if len(c.cells) == 1 for cell in c.cells])
    for c in ctx.claims:
        n = c.counts
        if len(c.cells) == 1:
            cell = c.cells[0]
            ours: object = [cell.statistic_text, Br(), cell.bounds_text(level)] if cell.verdict != ERROR else "—"
            verdict: object = _verdict_cell(cell)
        elif c.cells:
            ours = f"{n['reproduced']}/{len(c.cells)} cells reproduced"
            verdict = _badge(c.verdict)
        else:
            ours, verdict = "—", _badge(NOT_RUN)
        rows.append([
            Link(c.claim_id, anchor=f"claim-{c.claim_id.lower()}"),
            [c.statement, Br(), Em(c.source)],
            c.paper,
            verdict,
            " / ".join(str(n[k]) for k in OUTCOMES),
            [ours, Br(), *_plot_links(c.plots, plots)] if c.plots else ours,
            " / ".join(str(v) for v in inconclusive_counts(c.cells).values()),
            _claim_stability(c),
            _runs(c.total("n_seeds"), c.total("n_runs"), c.total("n_diverged")),
            _scale(ctx.profile, c),
        ])
    header = ["Claim", "Statement (source)", "Paper", "Verdict", "Cases: reproduced / contradicted / inconclusive / "
              "error", f"Ours (statistic, {_bounds_header(level)}; figures)", "Inconclusive: not testable here (premise absent) / "
              "too few seeds", "Stability", "Seeds / runs", "Profile: sizes (params)"]
    return [Heading(2, "Summary", "summary"), Table(header, rows)]


def claim_blocks(ctx: PageContext, plots: dict[str, Plot]) -> list:
    out: list = [Heading(2, "Claims in detail", "claims")]
    for c in ctx.claims:
        out.append(Heading(3, f"{c.claim_id}: {VERDICT_TEXT.get(c.verdict, c.verdict)}",
                           f"claim-{c.claim_id.lower()}"))
        out.append(Para([c.statement, " ", Em(c.source)]))
        swaps = sorted({cell.bits_substitution for cell in c.cells if cell.bits_substitution})
        if swaps:  # the verdicts below are not on the paper's bit-widths: say so before any of them
            out.append(Para(f"Tested at this profile's stand-in bit-widths: {'; '.join(swaps)} "
                            "(the paper's cost nothing measurable at this scale; docs/profiles.md).", "note"))
        out.append(Para([f"Test cases: {counts_text(c.counts)}"
                         + (f" (inconclusive: {inconclusive_text(c.cells)})" if c.counts["inconclusive"] else "")
                         + (f"; {c.n_fragile} FRAGILE" if c.n_fragile else "") + ". ",
                         f"Paper: {c.paper}. Designs: ", *_join([Code(d) for d in c.designs]),
                         f". Sizes ({_scale(ctx.profile, c)}). Figures: ", *_plot_links(c.plots, plots), "."]))
        if not c.cells:
            why = ("no verdicts for this profile (see the top of the page)" if not ctx.verdicts.available
                   else "the verdicts have no test case of this claim")
            out.append(Para(f"No verdict: {why}.", "note"))
            continue
        rows = []
        level = column_level(c.cells)
        for cell in c.cells:
            if cell.verdict == ERROR:
                said: object = [Code(cell.nodeid)] if cell.nodeid else "pipeline problem: no verdict"
            elif cell.verdict == "inconclusive" and cell.reason:
                said = [cell.observed, Br(), Em(f"inconclusive because: {cell.reason}")]
                if cell.why_inconclusive():
                    said += [Br(), Em(cell.why_inconclusive())]
            else:
                said = cell.observed
            if cell.mcb_best_set:
                said = [*(said if isinstance(said, list) else [said]), Br(),
                        Em(f"cannot be excluded as best (Hsu's MCB): wd {cell.mcb_best_set}")]
            rows.append([cell.cell or "—", _verdict_cell(cell), cell.statistic_text, cell.bounds_text(level),
                         _stability(cell), [cell.seeds or "n/a", Br(), _runs(cell.n_seeds, cell.n_runs,
                                                                             cell.n_diverged)],
                         cell.profile or "—", said])
        out.append(Table(["Cell", "Verdict", "Statistic (δ)", f"B{_bounds_header(level)[1:]}; region the "
                          "claim predicts", "Stability",
                          "Seeds", "Profile", "Observed"], rows))
    return out


def plot_blocks(ctx: PageContext) -> list:
    out: list = [Heading(2, "Figures", "figures"),
                 Para("Every number a figure states about a claim (optimum, fit, mean and interval, ratio) is the "
                      "one its decider reported in the verdict rows; the cache's runs appear only as data points.",
                      "note")]
    for p in ctx.plots:
        out.append(Heading(3, p.heading, f"plot-{p.name}"))
        if p.path:
            out += [Image(p), Para(Em(p.caption))]
        else:
            out.append(Para(f"Skipped: {p.skipped}.", "note"))
    return out


def calibration_blocks(ctx: PageContext) -> list:
    cal = ctx.calibration
    out: list = [Heading(2, "Calibration of the decision rules", "calibration")]
    if not cal.available:
        out.append(Para([f"{cal.note}. Produce it with ", Code(cal.how),
                         " and report again: it gives, per claim, the rule's error rates and power at this "
                         "profile's seeds, by simulation from the profile's noise prior."], "warn"))
        return out
    draws = f" ({cal.draws} simulated tables per scenario)" if cal.draws else ""
    alphas = sorted({cal.alpha[r.get("claim_id")] for r in cal.rows if r.get("claim_id") in cal.alpha})
    alpha = fmt_num(alphas[0]) if len(alphas) == 1 else "its alpha"
    out.append(Para([f"Error rates and power of each claim's decision rule at profile {ctx.profile.name}, by "
                     f"simulation{draws}, from ", Code(str(cal.path)), ", produced by ", Code(cal.command or cal.how),
                     f". The calibration test ({CALIBRATION_TEST}) holds each type-I error rate (the first three "
                     f"rate columns) to at most the claim's alpha plus a simulation slack of {fmt_num(cal.slack)}: "
                     f"at most {alpha} + {fmt_num(cal.slack)} (column 'Held to'); a rate between alpha and that is "
                     "within the simulation's noise, a rate above it fails the test and is marked ABOVE. Low power "
                     "means a reproduced claim would often come out inconclusive at these seeds."]))

    def rate(r: dict, key: str, bound: float | None = None) -> str:
        v = r.get(key)
        if not isinstance(v, (int, float)):
            return "n/a"
        return f"{v:.3f}" + (" ABOVE" if bound is not None and v > bound + 1e-12 else "")

    rows = []
    for r in cal.rows:
        bound = cal.bound(str(r.get("claim_id")))
        rows.append([r.get("claim_id", "?"), r.get("cell", ""), fmt_num(r.get("n_seeds")), fmt_bpb(as_float(r.get("delta"))),
                     rate(r, "false_contradict", bound), rate(r, "edge_contradict", bound),
                     rate(r, "false_reproduce", bound), "n/a" if bound is None else f"{bound:.3f}",
                     rate(r, "power_reproduce"), rate(r, "power_contradict")])
    out.append(Table(["Claim", "Test case", "Seeds", "δ", "P(contradicted | true)", "P(contradicted | true at its "
                      "edge)", "P(reproduced | false at δ)", "Held to (alpha + slack)", "Power: P(reproduced | true)",
                      "Power to contradict: P(contradicted | clearly false)"], rows))
    return out


def cache_blocks(ctx: PageContext) -> list:
    cs = ctx.cache
    out: list = [Heading(2, "Cache", "cache")]
    out.append(Para([
        "Cache ", Code(str(cs.root)), f": {cs.runs_used} of the profile's {cs.runs_expected} distinct runs are "
        f"present and used by this report. Compute spent on them: {cs.tokens:,} training tokens, "
        f"{cs.train_s:,.0f} training device-seconds ({cs.train_s / 3600:.2f} h), {cs.wall_s:,.0f} s wall time "
        "(summed over runs, each pack's time once: every run of a pack of K records the whole pack's time, so "
        f"each counts 1/K of it; {cs.n_packed} of the runs trained in packs)"
        + (f", on {', '.join(cs.devices)}" if cs.devices else "") + ".",
    ]))
    if ctx.verdicts.trained_run_ids is not None:
        out.append(Para(f"Runs trained by the recorded invocation: {len(ctx.verdicts.trained_run_ids)}."))
    rows = []
    for name, dd in ctx.designs.items():
        todo = len(dd.missing) + len(dd.corrupt)
        cmd = Code(f"python -m engine sweep --profile {ctx.profile.name} --design {name}") if todo else "—"
        rows.append([Code(name), len(dd.design.specs), len(dd.records), dd.n_diverged, len(dd.missing),
                     len(dd.corrupt), cmd])
    out.append(Table(["Design", "Runs", "Present", "Diverged", "Missing", "Unreadable", "To fill it"], rows))
    missing = sum(len(dd.missing) for dd in ctx.designs.values())
    if missing:
        out.append(Para(f"{missing} run(s) missing from the cache: the figures and any verdicts rest on the runs "
                        "present; fill the cache with the commands above.", "note"))
    if cs.diverged:
        out.append(Para(f"{len(cs.diverged)} diverged run(s) (excluded from means and tests, counted in the verdicts):"))
        items = []
        for design, rec in cs.diverged:
            s, r = rec["spec"], rec["result"]
            items.append([Code(rec["run_id"][:12]), f" ({design}): {s['size']} bits {s['bits']} wd {s['warmdown']:g} "
                          f"lr ×{s['lr_mult']:g} {s['optimizer']} seed {s['seed']}, diverged at step "
                          f"{fmt_num(r.get('diverged_step'))}"])
        out.append(Bullets(items))
    corrupt = [(name, spec, why) for name, dd in ctx.designs.items() for spec, why in dd.corrupt]
    if corrupt:
        out.append(Para(f"{len(corrupt)} unreadable record(s), treated as missing:", "note"))
        out.append(Bullets([[Code(spec.short_id), f" ({name}): {why}"] for name, spec, why in corrupt]))
    return out


def page_blocks(ctx: PageContext) -> list:
    plots = {p.name: p for p in ctx.plots}
    prof = ctx.profile
    out: list = [
        Heading(1, TITLE),
        Para([f"Profile {prof.name}: {prof.description} (", Code(str(prof.path)), f"). Generated {ctx.generated}."]),
    ]
    v = ctx.verdicts
    if v.available:
        cells = [cell for c in ctx.claims for cell in c.cells]
        case_counts = outcome_counts([cell.verdict for cell in cells])
        claim_counts = outcome_counts([c.verdict for c in ctx.claims])
        n_fragile = sum(cell.fragile for cell in cells)
        out.append(Para([f"Verdicts: {v.source}. Test cases: {counts_text(case_counts)} ({len(cells)} in all). "
                         f"Inconclusive test cases: {inconclusive_text(cells)}. "
                         f"Claims: {counts_text(claim_counts)}"
                         + (f", {sum(c.verdict == NOT_RUN for c in ctx.claims)} without a verdict"
                            if any(c.verdict == NOT_RUN for c in ctx.claims) else "") + ". ",
                         f"{n_fragile} verdict(s) FRAGILE." if n_fragile else "No verdict is fragile."]))
    else:
        out.append(Para(v.note + ".", "warn"))
    out.append(Para(f"Reproduced: the confidence bounds lie inside the region the claim predicts; contradicted: "
                    f"they lie wholly outside it; inconclusive: neither, at this profile's seeds; ERROR: a pipeline "
                    f"problem, not a verdict. Every interval is a two-sided CI at the level its column names (a "
                    f"bound at another level says so beside it); a 90 % CI's ends are the one-sided 95 % bounds "
                    f"that the rules and the observed texts speak of. Stability is the probability that a re-run "
                    f"with new seeds repeats the outcome; below {fmt_pct(FRAGILE_BELOW)} the verdict is FRAGILE. A "
                    f"verdict holds for the profile it ran under ({prof.name}) and the sizes and seeds listed beside "
                    "it; toy-scale profiles test the pipeline and the direction of effects, not the paper's numbers.",
                    "note"))
    sections = (overview_blocks(ctx) + summary_blocks(ctx, plots) + claim_blocks(ctx, plots) + plot_blocks(ctx)
                + calibration_blocks(ctx) + cache_blocks(ctx))
    return out + contents_blocks(ctx, sections) + sections


def contents_blocks(ctx: PageContext, sections: list) -> list:
    """Every section, and under the claims every claim, one click away."""
    items: list = []
    for b in sections:
        if isinstance(b, Heading) and b.level == 2 and b.anchor:
            items.append(Link(b.text, anchor=b.anchor))
            if b.anchor == "claims":
                items[-1] = [items[-1], ": ", *_join([Link(c.claim_id, anchor=f"claim-{c.claim_id.lower()}")
                                                      for c in ctx.claims])]
    return [Heading(2, "Contents", "contents"), Bullets(items)]


def overview_blocks(ctx: PageContext) -> list:
    out: list = [Heading(2, "Overview: every test case against its claim's region", "overview")]
    p = ctx.overview
    if p is None or not p.path:
        out.append(Para(f"No overview: {p.skipped if p else 'not drawn'}.", "note"))
        return out
    return out + [Image(p), Para(Em(p.caption))]


def _join(items: list, sep: str = ", ") -> list:
    out: list = []
    for i, x in enumerate(items):
        out += [sep, x] if i else [x]
    return out or ["—"]


# --- Markdown -------------------------------------------------------------------------


def _md(x, in_table: bool = False) -> str:
    if isinstance(x, list):
        return "".join(_md(y, in_table) for y in x)
    if isinstance(x, Code):
        return f"`{x.text}`"
    if isinstance(x, Em):
        return f"*{x.text}*" if x.text else ""
    if isinstance(x, Badge):
        return f"**{x.text}**" if x.kind in BAD_NEWS else x.text
    if isinstance(x, Link):
        return f"[{_md(x.body, in_table)}]({f'plots/{x.plot}.png' if x.plot else '#' + x.anchor})"
    if isinstance(x, Br):
        return "<br>" if in_table else "  \n"
    text = str(x)
    return text.replace("|", "\\|").replace("\n", " ") if in_table else text


def render_markdown(ctx: PageContext) -> str:
    lines: list[str] = []
    for b in page_blocks(ctx):
        if isinstance(b, Heading):
            if b.anchor:
                lines.append(f'<a id="{b.anchor}"></a>')
            lines += [f"{'#' * b.level} {b.text}", ""]
        elif isinstance(b, Para):
            prefix = "> " if b.cls in ("note", "warn") else ""
            lines += [prefix + _md(b.body), ""]
        elif isinstance(b, Table):
            lines.append("| " + " | ".join(_md(h, True) for h in b.header) + " |")
            lines.append("|" + "---|" * len(b.header))
            lines += ["| " + " | ".join(_md(c, True) for c in row) + " |" for row in b.rows]
            lines.append("")
        elif isinstance(b, Image):
            lines += [f"![{b.plot.title}](plots/{b.plot.name}.png)", ""]
        elif isinstance(b, Bullets):
            lines += [f"- {_md(i)}" for i in b.items] + [""]
    return "\n".join(lines)


# --- HTML -----------------------------------------------------------------------------

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1280px; margin: 1.5em auto;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; width: 100%; }
th, td { border: 1px solid #ccc; padding: .35em .5em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
code { background: #f4f4f4; padding: 0 .25em; border-radius: 3px; font-size: .92em; word-break: break-all; }
.badge { padding: .05em .4em; border-radius: 3px; font-weight: 600; white-space: nowrap; }
.v-reproduced { background: #d7f0d7; color: #1b5e20; }
.v-contradicted { background: #f8d0d0; color: #8b0000; }
.v-inconclusive { background: #fff0c2; color: #6d4c00; }
.v-fragile { background: #ffe0b2; color: #8a4b00; border: 1px solid #e0a060; }
.v-error { background: #8b0000; color: #fff; }
.v-not_run { background: #e6e6e6; color: #555; }
.note { color: #555; border-left: 3px solid #bbb; padding-left: .7em; }
.warn { background: #fff0c2; border-left: 4px solid #d9a400; padding: .5em .8em; }
figure { margin: .5em 0 1.5em; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
"""


def _html(x) -> str:
    if isinstance(x, list):
        return "".join(_html(y) for y in x)
    if isinstance(x, Code):
        return f"<code>{html.escape(x.text)}</code>"
    if isinstance(x, Em):
        return f"<em>{html.escape(x.text)}</em>"
    if isinstance(x, Badge):
        return f'<span class="badge v-{html.escape(x.kind)}">{html.escape(x.text)}</span>'
    if isinstance(x, Link):
        target = f"plot-{x.plot}" if x.plot else x.anchor
        return f'<a href="#{html.escape(target)}">{_html(x.body)}</a>'
    if isinstance(x, Br):
        return "<br>"
    return html.escape(str(x))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(ctx: PageContext) -> str:
    parts = ['<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
             f"<title>{html.escape(TITLE)} ({html.escape(ctx.profile.name)})</title>",
             f"<style>{CSS}</style>\n</head>\n<body>"]
    for b in page_blocks(ctx):
        if isinstance(b, Heading):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            parts.append(f"<h{b.level}{anchor}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            cls = f' class="{b.cls}"' if b.cls else ""
            parts.append(f"<p{cls}>{_html(b.body)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            body = "".join("<tr>" + "".join(f"<td>{_html(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Image):
            alt = html.escape(b.plot.title)
            parts.append(f'<figure><img src="{_data_uri(b.plot.path)}" alt="{alt}"></figure>')
        elif isinstance(b, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_html(i)}</li>" for i in b.items) + "</ul>")
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)
