"""Which runs go together and in what order: tasks (a run or a pack) and their schedule.

A sweep is a list of *tasks*: one run, or a pack of up to K same-shape runs (engine.packed),
the unit an executor submits. Tasks are ordered longest first over the whole sweep (Graham's
LPT rule: each free worker takes the longest task left), which bounds the makespan by 4/3 of
the optimum and in practice lands within a few per cent of the ideal (total cost / workers)
when no single task dominates. Cost = `engine.design.estimate_flops` (6 N T + attention): the
same model the plan prints, so the simulation below is the schedule the executors follow.

Hand-written because the rule is ten lines (a heap of worker finish times); no scheduling
library models "one queue, W identical workers, tasks known up front" more simply.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from engine.design import estimate_flops
from engine.spec import RunSpec


@dataclass(frozen=True)
class Task:
    """One submission: a single run, or a pack of same-shape runs trained together."""

    specs: tuple[RunSpec, ...]

    @property
    def cost(self) -> float:
        return sum(estimate_flops(s) for s in self.specs)

    @property
    def key(self) -> str:
        """Identity of the submission (its first run id): at most one live submission per key."""
        return self.specs[0].run_id

    def __str__(self) -> str:
        s = self.specs[0]
        more = f" (+{len(self.specs) - 1} packed)" if len(self.specs) > 1 else ""
        return f"{s.size} bits {s.bits} wd {s.warmdown:g} seed {s.seed} [{s.short_id}]{more}"


def make_tasks(specs: list[RunSpec], pack: int = 1) -> list[Task]:
    """Distinct specs grouped into tasks (packs of up to `pack` same-shape runs), longest first."""
    from engine.packed import pack_key

    unique = list({s.run_id: s for s in specs}.values())
    k = max(1, int(pack))
    groups: dict[tuple, list[RunSpec]] = {}
    for s in sorted(unique, key=estimate_flops, reverse=True):
        groups.setdefault(pack_key(s) if k > 1 else (s.run_id,), []).append(s)
    tasks = [Task(tuple(g[i:i + k])) for g in groups.values() for i in range(0, len(g), k)]
    tasks.sort(key=lambda t: -t.cost)
    return tasks


@dataclass(frozen=True)
class Schedule:
    workers: int
    makespan: float
    total: float
    longest: float

    @property
    def ideal(self) -> float:
        """No schedule beats this: the work spread evenly, or the longest task alone."""
        return max(self.total / self.workers, self.longest)

    @property
    def ratio(self) -> float:
        return self.makespan / self.ideal if self.ideal > 0 else 1.0


def simulate(costs: list[float], workers: int) -> Schedule:
    """Makespan when each free worker takes the next task in the given order (list scheduling)."""
    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    finish = [0.0] * workers
    for c in costs:
        heapq.heappush(finish, heapq.heappop(finish) + c)
    return Schedule(workers, max(finish) if costs else 0.0, float(sum(costs)), max(costs, default=0.0))


def lpt(tasks: list[Task], workers: int) -> Schedule:
    """The executors' schedule: longest task first over the whole sweep."""
    return simulate(sorted((t.cost for t in tasks), reverse=True), workers)


def by_groups(groups: list[list[Task]], workers: int) -> Schedule:
    """The schedule of training split by test cell: each group's tasks run in sequence on one
    worker (what the suite did before the controller filled the cache), groups longest first."""
    costs = sorted((sum(t.cost for t in g) for g in groups), reverse=True)
    total = float(sum(t.cost for g in groups for t in g))
    sched = simulate(costs, workers)
    return Schedule(workers, sched.makespan, total, max((t.cost for g in groups for t in g), default=0.0))
