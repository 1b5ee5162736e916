"""The pytest plugin that turns claims into tests: options, run access, verdicts, report.

Roles, one section each:
- options: one group, prefix `--qat-`, with the short forms the README uses
  (`--qat-profile`, `--tiny`, `--qat-no-train`; every flag but `--tiny` is prefixed `--qat-`, so the plugin
  coexists with plugins that register `--profile` and the like), validated in `pytest_configure`: a bad profile,
  claims file, `[verdicts]` section, cache or report directory is one `ERROR:` line (exit 4);
- run-wide state (`SuiteState` in `config.stash`): profile, claims, cache, training policy,
  device, pack size; each process's CPU thread count;
- parametrisation: a test marked `@pytest.mark.claim(ID)` gets one case per cell that the
  claim's `cells` table in fixtures/claims.toml generates for the profile
  (`hypotheses.cells.cells_for`), with readable ids (`test_c1_wd33_optimal[int6-t20k]`); a
  claim that cannot be decided at the profile (a design it lacks, a decider that does not
  import, no `[verdicts.delta]` entry, a role size its designs do not train:
  `hypotheses.checks`) makes each of its cases a setup ERROR naming the file and the key,
  found here, before any training, and its runs are not trained;
- the controller trains (`pytest_collection`): the process without xdist's `workerinput`
  collects, lists every run the selected tests need that the cache lacks, and trains them
  through the chosen executor (`--qat-executor local|ray|slurm`, engine.executors) before any
  test runs: one queue over the whole sweep, longest first, packs kept, one progress bar
  (shown without -s). Workers return records; the controller alone writes the cache;
- fixtures: `claim` (the claim record at this profile), `table` (reads the cell's design
  slice from the cache; never trains: a missing run is a setup ERROR naming the command that
  produces it), `decide` (the claim's decider plus the verdict's stability,
  `hypotheses.decide.decide_cell`), `judge` (records the verdict as JUnit properties, then
  passes if reproduced, fails if contradicted, skips with the reason if inconclusive);
- reporting: the controller collects every verdict and writes reports/ at the end.

So xdist workers (`-n N`, `-n auto`) only decide: N sets how many cells are decided at once,
not how many runs train (that is the executor's `--qat-jobs`, default one per GPU or core).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.cache import CorruptRecordError, ResultsCache, records_to_table
from engine.design import Profile, ProfileError, available_profiles, estimate_flops, load_profile
from engine.options import EXECUTOR_OPTIONS, shared_options
from engine.spec import RunSpec
from hypotheses.cells import Cell, cell_specs, cells_for
from hypotheses.decide import decide_cell, stability_text, verdict_row

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "paper"  # plain `pytest hypotheses/` is the real study
VERDICT_PREFIX = "qat_"  # JUnit property names
VERDICTS_FILE = "verdicts.json"


# --- options ------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("qat", "QAT schedule x bit-width study")
    g.addoption("--qat-profile", dest="qat_profile", default=None,
                help=f"study scale: one of {available_profiles()} or a path to a profile .toml "
                     f"(default: {DEFAULT_PROFILE}, the real study)")
    g.addoption("--qat-tiny", "--tiny", dest="qat_tiny", action="store_true",
                help="shorthand for --qat-profile tiny (CPU, CI, minutes)")
    g.addoption("--qat-no-train", dest="qat_train", action="store_const", const="never",
                help="never train: a test whose runs are missing is an ERROR naming the sweep command")
    g.addoption("--qat-train", dest="qat_train", action="store_const", const="always",
                help="train missing runs even on a CPU-only machine for a GPU-scale profile")
    g.addoption("--qat-report-dir", dest="qat_report_dir", default="reports",
                help="where the JUnit XML, verdicts and report go (default: reports/)")
    g.addoption("--qat-claims", dest="qat_claims", default=None,
                help="the claims file (default: fixtures/claims.toml)")
    # cache dir, on-corrupt, on-mismatch, device, pack, progress, threads, precision, compile: defined once
    # with the CLI's
    for opt in shared_options("cache_dir", "on_corrupt", "on_mismatch", "device", "pack", "progress", "threads",
                              "precision", "compile"):
        g.addoption(f"--qat-{opt.flag}", dest=f"qat_{opt.dest}", **opt.argparse_kwargs())
    g.addoption("--qat-no-report", dest="qat_report", action="store_false", default=True,
                help="do not write the Markdown/HTML report at the end")
    # where the controller trains the missing runs of the selected tests: the options of
    # `python -m engine sweep --executor ...`, defined once in engine.options
    for opt in shared_options(*EXECUTOR_OPTIONS):
        g.addoption(f"--qat-{opt.flag}", dest=f"qat_{opt.dest}", **opt.argparse_kwargs())


# --- run-wide state -----------------------------------------------------------------


@dataclass
class SuiteState:
    profile: Profile
    cache: ResultsCache
    train_policy: str  # 'always' | 'never' | 'auto'
    device: str | None
    report_dir: Path
    pack: int = 1
    progress: bool = False
    verdicts: list[dict] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    claims: dict = field(default_factory=dict)  # id -> hypotheses.claims.Claim (--qat-claims), checked at configure

    @property
    def may_train(self) -> bool:
        if self.train_policy == "always":
            return True
        if self.train_policy == "never":
            return False
        import torch

        return self.profile.train_without_gpu or torch.cuda.is_available()

    def sweep_command(self, designs: list[str]) -> str:
        from engine.design import sweep_command

        return sweep_command(self.profile, designs, self.cache.root)

    def fetch(self, specs: list[RunSpec], designs: list[str]):
        """The results table of `specs`, from the cache alone (the controller trained what it could).

        A missing run raises MissingRunsError naming why it is missing and the command that
        produces it: a test never trains, so an xdist worker only decides.
        """
        if not self.may_train:
            why = ("(--qat-no-train given)" if self.train_policy == "never"
                   else f"(profile {self.profile.name!r} is GPU-scale and no GPU is visible; --qat-train forces it)")
        else:
            why = "(the controller's training did not produce them: its report above the tests names the error)"
        hint = f"{why} Produce them with: {self.sweep_command(designs)}"
        return records_to_table(self.cache.ensure(specs, None, missing_hint=hint))


STATE = pytest.StashKey[SuiteState]()


@dataclass(frozen=True)
class MissingDesign:
    """Stands in for a claim's cells that cannot be decided at this profile, found at collection: the
    profile lacks the design they need, or the claim's decider, delta or role is wrong. Its test is a
    setup ERROR naming the file and the key (`table`), and its runs are never trained."""

    message: str
    id: str = "missing-design"
    error: type = ProfileError  # ProfileError, or ClaimsFileError where the claims file is wrong


def _configure_threads(config: pytest.Config) -> None:
    from engine.runtime import set_threads

    # Workers share the cores: oversubscribed BLAS threads make every worker slower.
    set_threads(config.getoption("qat_threads"), workers=int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


@pytest.hookimpl(tryfirst=True)  # before junitxml's, which reads xmlpath
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(id): a claim test, one case per cell of the claim (fixtures/claims.toml)")
    name = "tiny" if config.getoption("qat_tiny") else (config.getoption("qat_profile") or DEFAULT_PROFILE)
    if config.getoption("qat_tiny") and config.getoption("qat_profile") not in (None, "tiny"):
        raise pytest.UsageError("--tiny and --qat-profile name different profiles; give one")
    from hypotheses.checks import check_verdicts
    from hypotheses.claims import load_claims

    # Every input error here is one `ERROR:` line (exit 4) before anything trains, never an INTERNALERROR.
    try:
        profile = load_profile(name)
        claims = load_claims(config.getoption("qat_claims"))
        check_verdicts(profile, claims)
        cache = ResultsCache(config.getoption("qat_cache_dir"), on_corrupt=config.getoption("qat_on_corrupt"))
    except ValueError as e:  # ProfileError, ClaimsFileError, a cache that is a file
        raise pytest.UsageError(str(e)) from None
    device = config.getoption("qat_device")  # None: the executor uses every visible GPU, else the CPU
    report_dir = Path(config.getoption("qat_report_dir"))
    if not hasattr(config, "workerinput"):
        _check_report_dir(report_dir)
    config.stash[STATE] = SuiteState(
        profile=profile,
        cache=cache,
        claims=claims,
        train_policy=config.getoption("qat_train") or "auto",
        device=device,
        report_dir=report_dir,
        pack=config.getoption("qat_pack") or profile.pack,
        progress=config.getoption("qat_progress"),
    )
    if not getattr(config.option, "xmlpath", None) and not hasattr(config, "workerinput"):
        report_dir.mkdir(parents=True, exist_ok=True)
        config.option.xmlpath = str(report_dir / "junit.xml")
    _configure_threads(config)
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(
            VerdictCollector(config.stash[STATE], config.getoption("qat_report")), "qat-verdicts"
        )


def _check_report_dir(report_dir: Path) -> None:
    """--qat-report-dir is (or can be made) a writable directory: found now, not when the JUnit XML is
    written after every test has run."""
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise pytest.UsageError(f"--qat-report-dir {report_dir}: cannot create the directory ({e.strerror or e}); "
                                "give a writable directory") from None
    if not os.access(report_dir, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"--qat-report-dir {report_dir}: the directory is not writable; "
                                "give a writable directory")


def pytest_report_header(config: pytest.Config) -> list[str]:
    st = config.stash.get(STATE, None)
    if st is None:
        return []
    return [
        f"qat profile: {st.profile.name} ({st.profile.description})",
        f"qat cache: {st.cache.root}  training: {st.train_policy} ({'allowed' if st.may_train else 'off'})",
    ]


# --- parametrisation ----------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("claim")
    if marker is None or "cell" not in metafunc.fixturenames:
        return
    from hypotheses.checks import check_claim
    from hypotheses.claims import ClaimsFileError

    st = metafunc.config.stash[STATE]
    profile, claim_id = st.profile, marker.args[0]
    if claim_id not in st.claims:
        metafunc.parametrize("cell", [pytest.param(MissingDesign(
            f"{metafunc.definition.nodeid}: @pytest.mark.claim({claim_id!r}) names no claim of the claims file; "
            f"its claims are {list(st.claims)}", "unknown-claim", ClaimsFileError), id="unknown-claim")])
        return
    claim = st.claims[claim_id].at_profile(profile)
    try:
        params = [pytest.param(c, id=c.id) for c in cells_for(claim, profile)]
    except ProfileError as e:  # the profile lacks this claim's design: an ERROR at setup, not a crash
        params = [pytest.param(MissingDesign(str(e)), id="missing-design")]
    else:
        try:  # decider, scenarios, delta, role sizes: each case an ERROR at setup, before any training
            check_claim(claim, profile)
        except ValueError as e:
            kind = ClaimsFileError if isinstance(e, ClaimsFileError) else ProfileError
            params = [pytest.param(MissingDesign(str(e), p.id, kind), id=p.id) for p in params]
    if not params:
        params = [pytest.param(None, id="no-cells", marks=pytest.mark.skip(
            reason=f"profile {profile.name!r} has no cell for this claim"))]
    metafunc.parametrize("cell", params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Most expensive claim cells first (LPT): xdist workers then finish together instead of
    one worker training the longest design alone at the end."""
    st = config.stash[STATE]

    def cost(item: pytest.Item) -> float:
        cell = getattr(item, "callspec", None) and item.callspec.params.get("cell")
        if not isinstance(cell, Cell):
            return 0.0
        try:
            return sum(estimate_flops(s) for s in cell_specs(st.profile, cell))
        except ProfileError:  # a design the profile lacks: the test's setup reports it
            return 0.0

    items.sort(key=cost, reverse=True)


# --- the controller trains ------------------------------------------------------------


def _executor_options(config: pytest.Config) -> dict:
    return {k: config.getoption(f"qat_{k}") for k in EXECUTOR_OPTIONS}


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session):
    """The controller collects, then trains every missing run of the selected tests before any
    test runs: one queue over the whole sweep (longest first, packs kept), one progress bar, the
    chosen executor. xdist workers collect for themselves and only decide from the cache.

    Without permission to train nothing is trained here, and each test whose runs are missing
    is an ERROR naming the sweep command (the `table` fixture), as before.
    """
    config = session.config
    st = config.stash.get(STATE, None)
    if hasattr(config, "workerinput") or st is None:
        return None  # a worker: collect normally; it decides, never trains
    session.perform_collect()
    collect_failed = session.testsfailed and not config.getoption("continue_on_collection_errors")
    if not config.getoption("collectonly") and not collect_failed:
        specs: dict[str, RunSpec] = {}
        broken: dict[str, None] = {}  # what the setup ERRORs will say, in order, once each
        for item in session.items:
            cell = getattr(item, "callspec", None) and item.callspec.params.get("cell")
            if isinstance(cell, MissingDesign):
                broken.setdefault(cell.message)
            if isinstance(cell, Cell):
                try:
                    specs.update((s.run_id, s) for s in cell_specs(st.profile, cell))
                except ProfileError:
                    continue  # the test's setup reports the missing design
        if specs and not st.may_train and st.train_policy == "auto":
            _stop_gpu_profile_on_cpu(st, session.items, list(specs.values()))
        if specs and st.may_train:
            _before_training(config, st, list(broken))
            try:
                _fill(config, st, list(specs.values()))
            except CorruptRecordError as e:  # --qat-on-corrupt error (the default): one line, not an INTERNALERROR
                raise pytest.UsageError(f"qat: {e}") from None
        if specs:
            _notice_mixed(config, st, list(specs.values()))
    return True


def _stop_gpu_profile_on_cpu(st: SuiteState, items, specs: list[RunSpec]) -> None:
    """A GPU-scale profile on a machine without a GPU, runs missing: one line, not an ERROR per test.

    `pytest hypotheses/` with no flag is the real study; on a laptop its hundreds of missing runs
    once gave the right message buried in 2,218 lines of setup errors and tracebacks.
    """
    missing = st.cache.missing(specs)
    if not missing:
        return  # everything cached: decide as usual
    designs = list(dict.fromkeys(d for item in items if isinstance(cell := getattr(getattr(item, "callspec", None),
                                                                                  "params", {}).get("cell"), Cell)
                                 for d in cell.designs))
    raise pytest.UsageError(
        f"qat: profile {st.profile.name!r} is GPU-scale and no GPU is visible: {len(missing)} of its {len(specs)} runs "
        f"are not cached. Train them on GPUs with `{st.sweep_command(designs)}`, or run the study at toy scale on "
        f"this CPU: `pytest hypotheses/ --tiny` (--qat-train forces training here; --qat-no-train decides from what "
        f"is cached)")


def _before_training(config: pytest.Config, st: SuiteState, broken: list[str]) -> None:
    """Before the controller trains: the tests that cannot run, said now rather than after the
    training (their runs are not trained), and a C++ compiler where --qat-compile needs one."""
    from engine.compilation import check_compiler

    tr = config.pluginmanager.get_plugin("terminalreporter")
    for message in broken if tr else ():
        tr.write_line(f"qat: ERROR (its tests are not run, their runs not trained): {message}", red=True)
    if config.getoption("qat_executor") == "local":  # Ray and Slurm workers compile on their own machines
        try:
            check_compiler(st.device, config.getoption("qat_compile"))
        except ValueError as e:
            raise pytest.UsageError(f"qat: cannot train the missing runs: {e}") from None


def _notice_mixed(config: pytest.Config, st: SuiteState, specs: list[RunSpec]) -> None:
    """One line when the cached runs the tests decide from were trained in different numeric environments
    or on different versions of one data source (a cache filled in several places): the deciders still
    run (deciding never checks identities), but differences between cells may come from that."""
    from engine.cache import CorruptRecordError
    from engine.identity import mixed_environments

    try:
        note = mixed_environments(r for r in (st.cache.get(s) for s in specs) if r)
    except CorruptRecordError:
        return  # the tests that read it report it
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if note and tr:
        tr.write_line(f"qat: note: the cached runs these tests decide from mix environments: {note}", yellow=True)


STOPPED = ("qat: training stopped; its workers were stopped too. Finished runs are cached; run the same command "
           "again to resume")


def _fill(config: pytest.Config, st: SuiteState, specs: list[RunSpec]) -> None:
    from engine.executors import executor_from_options, fill, resume_dir, runs_to_train
    from engine.runtime import sigterm_as_interrupt

    # --qat-threads: each local worker's CPU threads too (the default shares the cores out among them)
    opts = {**_executor_options(config), "threads": config.getoption("qat_threads")}
    precision, on_mismatch = config.getoption("qat_precision"), config.getoption("qat_on_mismatch")
    try:
        executor = executor_from_options(opts, device=st.device)
        # a cached run made in another identity (data, threads, device, precision): one line, before training
        missing = runs_to_train(st.cache, specs, executor, precision=precision, on_mismatch=on_mismatch,
                                who="this suite")
    except ValueError as e:
        raise pytest.UsageError(f"qat: cannot train the missing runs: {e}") from None
    if not missing:
        return
    every = st.profile.checkpoint_every
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr:
        tr.write_line(f"qat: {len(missing)} of {len(specs)} run(s) the selected tests need are missing; "
                      f"training them with the {opts['executor']} executor before the tests run")
    capman = config.pluginmanager.getplugin("capturemanager")
    try:
        # SIGTERM stops the training as Ctrl-C does: the executor stops its workers as fill unwinds
        with sigterm_as_interrupt(), capman.global_and_fixture_disabled() if capman else _nullcontext():
            report = fill(st.cache, missing, executor, pack=st.pack, progress=True,
                          checkpoint_dir=resume_dir(opts, st.cache.root, every), checkpoint_every=every,
                          desc=f"qat {st.profile.name}: training", run_progress=st.progress,
                          precision=precision, compile=config.getoption("qat_compile"), on_mismatch=on_mismatch)
    except (ValueError, OSError) as e:  # bad input (data, tokenizer, executor, disk), found before any run starts
        raise pytest.UsageError(f"qat: cannot train the missing runs: {e}") from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: one line, as `engine sweep` says it
        pytest.exit(STOPPED, returncode=130)
    still_missing = {s.run_id for s in st.cache.missing(specs)}
    st.trained.extend(s.run_id for s in missing if s.run_id not in still_missing)
    if tr:
        tr.write_line(f"qat: trained {report.trained} run(s), {report.diverged} diverged, {len(report.failed)} failed"
                      + (" (their tests report the error)" if report.failed else "")
                      + (f"; {report.waited} trained by another driver" if report.waited else ""))
        for task, err in report.failed:
            tr.write_line(f"  FAILED {task}: {err}", red=True)


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def suite(pytestconfig: pytest.Config) -> SuiteState:
    return pytestconfig.stash[STATE]


@pytest.fixture(scope="session")
def claims(suite: SuiteState):
    """The claims of --qat-claims (default fixtures/claims.toml), loaded and checked at configure."""
    return suite.claims


@pytest.fixture
def claim(request: pytest.FixtureRequest, claims, suite: SuiteState):
    """The claim of this test, with the profile's smallest effect of interest merged in."""
    marker = request.node.get_closest_marker("claim")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses `claim` but has no @pytest.mark.claim")
    return claims[marker.args[0]].at_profile(suite.profile)


@pytest.fixture
def table(request: pytest.FixtureRequest, cell, claim, suite: SuiteState):
    """The results table of this test case's design slice (`cell`), read at SETUP time.

    Missing runs (no permission to train, or a training that failed in the controller) raise
    here, so pytest reports an ERROR (a pipeline problem naming the sweep command), never a
    failed or skipped claim.
    """
    # Name the claim and cell first, so that a setup ERROR below still says whose it is.
    request.node.user_properties.append((VERDICT_PREFIX + "claim_id", claim.id))
    request.node.user_properties.append((VERDICT_PREFIX + "cell", getattr(cell, "id", "missing-design")))
    request.node.user_properties.append((VERDICT_PREFIX + "profile", suite.profile.name))
    if isinstance(cell, MissingDesign):  # found at collection: the message alone, no traceback into this fixture
        pytest.fail(f"{cell.error.__name__}: {cell.message}", pytrace=False)
    specs = cell_specs(suite.profile, cell)
    if not specs:
        raise ProfileError(f"profile {suite.profile.name!r}: no runs in {cell.designs} match {cell.filters}")
    return suite.fetch(specs, list(cell.designs))


@pytest.fixture
def decide(claim, cell, suite: SuiteState):
    """``decide(table) -> Verdict``: the claim's decider on this cell, with its stability."""
    return lambda table: decide_cell(claim, cell, table, suite.profile)


@pytest.fixture
def judge(request: pytest.FixtureRequest, suite: SuiteState, record_property):
    """Record a Verdict as JUnit properties, then pass (reproduced), fail (contradicted) or
    skip with the reason (inconclusive)."""

    def _judge(verdict) -> None:
        cell = request.node.callspec.id if hasattr(request.node, "callspec") else ""
        named = {k for k, _ in request.node.user_properties}  # claim, cell, profile: named at setup (`table`)
        for k, v in verdict_row(verdict, suite.profile, cell).items():
            if VERDICT_PREFIX + k not in named:  # each JUnit property once
                record_property(VERDICT_PREFIX + k, v)
        where = f"{verdict.claim_id}[{cell}] at profile {suite.profile.name!r}"
        stable = f"stability {stability_text(verdict.stability)}" + (" FRAGILE" if verdict.fragile else "")
        if verdict.outcome == "reproduced":
            return
        if verdict.outcome == "inconclusive":
            pytest.skip(f"inconclusive {where} ({stable}): {verdict.reason}")
        pytest.fail(
            f"CONTRADICTED {where} ({stable})\n  claimed:  {verdict.statement}\n  observed: {verdict.observed}",
            pytrace=False,
        )

    return _judge


# --- reporting ----------------------------------------------------------------------


class VerdictCollector:
    """Controller-side: gathers every claim test's verdict (from its JUnit properties,
    which xdist ships back from the workers) and writes verdicts + report at the end."""

    def __init__(self, state: SuiteState, write_report: bool):
        self.state = state
        self.write_report = write_report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = {k[len(VERDICT_PREFIX):]: v for k, v in report.user_properties if k.startswith(VERDICT_PREFIX)}
        if props and report.when == "call" and "verdict" in props:
            self.state.verdicts.append({"nodeid": report.nodeid, "pytest_outcome": report.outcome, **props})
        elif report.failed and report.when in ("setup", "call") and _is_claim_test(report.nodeid):
            self.state.verdicts.append({
                "nodeid": report.nodeid, "pytest_outcome": "error", "verdict": "error",
                "claim_id": props.get("claim_id", "?"), "cell": props.get("cell", ""),
                "profile": self.state.profile.name, "error": _error_message(report),
            })

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        st = self.state
        if not st.verdicts:
            return
        st.report_dir.mkdir(parents=True, exist_ok=True)
        payload = {"profile": st.profile.name, "profile_path": str(st.profile.path), "verdicts": st.verdicts,
                   "trained_run_ids": st.trained}
        (st.report_dir / VERDICTS_FILE).write_text(json.dumps(payload, indent=1, default=str))
        if not self.write_report:
            return
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        try:
            from hypotheses.report import build_report

            out = build_report(cache_dir=st.cache.root, report_dir=st.report_dir, profile=str(st.profile.path),
                               rows=st.verdicts, claims_file=session.config.getoption("qat_claims"))
            if tr:
                tr.write_line(f"qat report: {out}")
        except Exception as e:  # a broken report must not hide the verdicts themselves
            log.exception("report failed")
            if tr:
                tr.write_line(f"qat report FAILED: {type(e).__name__}: {e}", red=True)


def _is_claim_test(nodeid: str) -> bool:
    return nodeid.startswith("hypotheses/") or "/hypotheses/test_" in nodeid


def _error_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and crash.message:
        return crash.message
    lines = [ln for ln in report.longreprtext.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"
