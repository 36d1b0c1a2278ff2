"""Settings of one DHP training run: what shapes the trajectory, and how the coordinator waits."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.dhp.batches import DataSettings
from engine.dhp.defaults import AVERAGE_EVERY, AVERAGE_WEIGHTING, WEIGHTINGS
from engine.dhp.policy import Policy
from engine.dhp.schedule import MODES, POLICIES, Mode
from engine.errors import ConfigError
from engine.model import ModelConfig
from engine.optim import OptimConfig


@dataclass(frozen=True)
class RunSettings:
    """A DHP run. ``model``, ``optim``, ``data`` (but its path) and ``seed`` fix the trajectory and are
    stored in the checkpoint; a resumed run must repeat them."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model every stage is cut from."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """SGD settings; ``optim.total_steps`` is the run's iteration count (the cosine spans it)."""
    data: DataSettings = field(default_factory=lambda: DataSettings(path=None))
    """How stage-1 nodes build mini-batches (``data.batch_size`` must equal ``optim.batch_size``)."""
    mode: Mode = "dynamic"
    """``dynamic`` (Fig. 4b) or ``fixed`` chains (Fig. 4a)."""
    policy: Policy = "first_free"
    """Next-hop policy of dynamic chains: ``first_free`` (the paper) or ``earliest_finish``."""
    overlap: bool = True
    """Overlap communication with computation (paper 3.3.2): a node takes its next chain while its gradient is on
    the wire, and a stage-1 node reads and augments its next mini-batch while it waits for its chain."""
    average_every: int = AVERAGE_EVERY
    """Average the replicas of each stage every this many iterations (paper: 100); 0: only at the end."""
    average_weighting: str = AVERAGE_WEIGHTING
    """``equal``: the replicas' plain mean (the paper); ``batches``: weighted by the mini-batches each trained
    since the last average; ``sum``: every replica's update since the last average is applied
    (``engine.dhp.averaging``)."""
    seed: int = 0
    """Seeds the initial weights (one model, split into stages) and, through ``data``, the batches."""
    time_budget: float | None = None
    """Wall-clock seconds for the whole run (a resumed run included): the iteration count is re-planned during
    the run (``engine.lr_schedule.BudgetPlanner``) so that the cosine schedule ends in time; ``optim.total_steps``
    is the first plan."""
    emulate: bool = True
    """Send the profile's stage times to the nodes, so emulated boards pace to them (real boards ignore them)."""
    data_paths: dict[str, str] = field(default_factory=dict)
    """Per-node dataset folder, overriding ``data.path`` (the inventory's ``data_path``)."""
    out_dir: Path | None = None
    """Where ``checkpoint.pt`` goes (None: no checkpoints)."""
    checkpoint_every: int = 0
    """Also checkpoint at the first averaging at or after every this many iterations (0: at the end only)."""
    request_timeout: float = 120.0
    """Seconds a node may take to answer a request (parameters for averaging, telemetry)."""
    assign_timeout: float = 900.0
    """Seconds a node may take to load its stage (a stage-1 node decodes its whole dataset first)."""
    heartbeat_interval: float = 2.0
    """Seconds between pings to each node."""
    heartbeat_timeout: float = 30.0
    """A node silent this long is lost."""
    chain_timeout: float = 120.0
    """A chain with no report for this long (a lost message, a wedged step) is given up and its batch handed
    out again; 0 disables. Time spent waiting for a free node does not count, and the limit grows to 5x the
    slowest node's usual hold where steps are that slow."""
    stall_timeout: float = 600.0
    """The run stops when no node reports anything this long while chains are in flight."""
    rejoin_interval: float = 2.0
    """Seconds between attempts to reconnect a lost node (dynamic mode)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose {' or '.join(MODES)}")
        if self.policy not in POLICIES:
            raise ConfigError(f"unknown policy {self.policy!r}; choose {' or '.join(POLICIES)}")
        if self.optim.total_steps < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.optim.total_steps}")
        if self.average_weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown average weighting {self.average_weighting!r}; choose {' or '.join(WEIGHTINGS)}")
        if self.chain_timeout < 0:
            raise ConfigError(f"chain_timeout must be >= 0 s, got {self.chain_timeout}")
        if self.average_every < 0 or self.checkpoint_every < 0:
            raise ConfigError("average_every and checkpoint_every must be >= 0")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ConfigError(f"the time budget must be positive, got {self.time_budget}")
        if self.data.batch_size != self.optim.batch_size:
            raise ConfigError(f"data batch size {self.data.batch_size} differs from the optimiser's {self.optim.batch_size}")

    @property
    def iterations(self) -> int:
        """Iterations of the whole run (a resumed run included)."""
        return self.optim.total_steps

    def trajectory(self) -> dict[str, Any]:
        """What a resumed run must repeat (under a time budget, all but the re-planned iteration count)."""
        optim = self.optim.to_dict()
        if self.time_budget is not None:
            del optim["total_steps"]
        return {"model": self.model.to_dict(), "optim": optim,
                "data": replace(self.data, path=None).to_dict(), "seed": self.seed}
