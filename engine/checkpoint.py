"""Checkpoints for resuming a killed run, through DeepSpeed's save/load.

A checkpoint is `DIR/step<N>/` written by `engine.save_checkpoint` (model, optimiser
states and our loop state as `client_state`), then a `COMPLETE` marker written last and
atomically: a checkpoint without it (the process died while saving) is ignored and
removed. Older complete checkpoints are removed once a newer one is complete.

Resuming gives the same result as an uninterrupted run: batches are a pure function of
(seed, step) and the model and optimiser states are restored exactly.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from engine.atomic import atomic_write
from engine.faults import fault_point

log = logging.getLogger(__name__)
MARKER = "COMPLETE"


class Checkpointer:
    def __init__(self, directory: Path, every: int):
        if every <= 0:
            raise ValueError(f"checkpoint_every={every} must be positive")
        self.dir = Path(directory)
        self.every = every

    def due(self, steps_done: int, total: int) -> bool:
        return steps_done % self.every == 0 and steps_done < total

    def complete_tags(self) -> list[str]:
        if not self.dir.exists():
            return []
        tags = [p.name for p in self.dir.iterdir() if p.is_dir() and (p / MARKER).exists()]
        return sorted(tags, key=lambda t: int(t.removeprefix("step")))

    def save(self, ds_engine, steps_done: int, loop_state: dict) -> None:
        tag = f"step{steps_done}"
        ds_engine.save_checkpoint(str(self.dir), tag=tag, client_state={"loop": loop_state}, save_latest=False)
        fault_point("checkpoint")
        atomic_write(self.dir / tag / MARKER, str(steps_done))
        for old in self.dir.iterdir():
            if old.is_dir() and old.name != tag:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, ds_engine) -> dict | None:
        """Restore the newest complete checkpoint into `ds_engine`; its loop state, or None."""
        tags = self.complete_tags()
        for junk in (p for p in self.dir.iterdir() if p.is_dir() and p.name not in tags) if self.dir.exists() else ():
            shutil.rmtree(junk, ignore_errors=True)  # half-written by a killed process
        if not tags:
            return None
        _, client_state = ds_engine.load_checkpoint(str(self.dir), tag=tags[-1], load_optimizer_states=True,
                                                    load_lr_scheduler_states=False)
        if client_state is None or "loop" not in client_state:
            raise RuntimeError(f"checkpoint {self.dir / tags[-1]} has no loop state; delete {self.dir} to restart")
        log.info("resumed from %s", self.dir / tags[-1])
        return client_state["loop"]

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
