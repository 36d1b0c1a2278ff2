"""What an earlier console left running when it died without closing (SIGKILL, a crash, a lost machine): the
emulated cluster it started, and the training run it launched, both alive while their console is gone.

A cluster started with ``litesrl cluster up`` has no owner and is never a leftover; nor is anything whose
console still runs (another console on this machine).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from console.cluster.local import ClusterState, down, read_state
from console.process_id import stop_group
from console.services.run_record import RunRecord
from console.services.training_run import EVENTS, runs_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrphanRun:
    """A ``litesrl train`` still training into its run folder while the console that followed it is gone."""

    folder: Path
    """Its run folder (``runs_dir()/<time>-<mode>``)."""
    record: RunRecord
    """Its processes, from ``process.json``."""

    @property
    def events(self) -> Path:
        """Its event stream."""
        return self.folder / EVENTS


@dataclass(frozen=True)
class Leftovers:
    """Everything found; empty (false) when nothing was left behind."""

    cluster: ClusterState | None = None
    """An emulated cluster whose owner console is gone and of which some agents still run."""
    runs: tuple[OrphanRun, ...] = ()
    """Orphaned training runs, oldest first."""

    def __bool__(self) -> bool:
        return self.cluster is not None or bool(self.runs)

    @property
    def cluster_complete(self) -> bool:
        """True when every agent of the leftover cluster runs (only such a cluster can be reused)."""
        return self.cluster is not None and all(agent.alive() for agent in self.cluster.agents)

    def lines(self) -> list[str]:
        """One line per leftover, for people."""
        found = []
        if self.cluster is not None:
            alive = sum(agent.alive() for agent in self.cluster.agents)
            owner = self.cluster.owner.pid if self.cluster.owner else "?"
            found.append(f"the emulated cluster of console pid {owner}: {alive} of {len(self.cluster.agents)} "
                         f"agent(s) running ({self.cluster.profile}, time ×{self.cluster.time_scale:g})")
        for run in self.runs:
            found.append(f"training pid {run.record.process.pid} of console pid {run.record.console.pid}, "
                         f"still running into {run.folder}")
        return found


def find_leftovers(runs: Path | None = None) -> Leftovers:
    """The leftovers of consoles that are gone: the recorded cluster and the run folders under ``runs``
    (default :func:`runs_dir`)."""
    state = read_state()
    cluster = None
    if state is not None and state.owner is not None and not state.owner.alive() and \
            any(agent.alive() for agent in state.agents):
        cluster = state
    orphans = []
    folder = runs or runs_dir()
    for run in sorted(folder.iterdir()) if folder.is_dir() else ():
        record = RunRecord.read(run) if run.is_dir() else None
        if record is not None and record.process.alive() and not record.console.alive():
            orphans.append(OrphanRun(run, record))
    return Leftovers(cluster, tuple(sorted(orphans, key=lambda orphan: orphan.record.started)))


def stop_leftovers(leftovers: Leftovers, grace: float = 10.0) -> list[str]:
    """Stop the orphaned runs (as Ctrl-C would: they checkpoint first), then the cluster's agents; returns
    what happened, one line each."""
    done = []
    for run in leftovers.runs:
        done.append(f"training pid {run.record.process.pid}: {stop_group(run.record.process, grace)}")
    if leftovers.cluster is not None and read_state() == leftovers.cluster:  # not a cluster started meanwhile
        done += [f"{node}: {outcome}" for node, outcome in down()]
    for line in done:
        log.info("leftover %s", line)
    return done
