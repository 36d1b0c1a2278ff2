"""A partition plan and its cost model: stage memory, per-node time (eq. 8) and the index E (eq. 9).

Cost model for n stages on an ordered chain of nodes ``v_1 .. v_n``, stage k holding layers
``[s_k, e_k)`` (all three search methods are scored by it, so they can be shown side by side):

* **compute** ``c_k = sum(forward_ms + backward_ms) / speed(v_k)``; stage 1 also reads, decodes and
  augments the mini-batch (the profile's ``data_ms``), which only it does.
* **send** ``x_k``: what node k puts on the wire: its output activation forward at its end cut
  and the gradient of its input backward at its start cut, each ``bytes / bandwidth + latency``
  (``engine.cwb.transfer``). Every crossing is counted once, by its sender.
* **busy** ``t_k = c_k + x_k``; **mini-batch time** (eq. 8) ``T = sum_k t_k`` = all forward +
  all backward + forward transfers ``T_ta`` + backward transfers ``T_tb`` (Algorithm 2 line 9's T_all).
* **memory** ``m_k``, by one of two accountings (``ACCOUNTINGS``):

  - ``exact``: weights + gradients + optimizer state + the activations autograd really saves, of
    its layers, + the cut buffers it holds: at a start cut the received activation and the
    gradient it sends back (``2 x output_bytes``), at an end cut the activation it sends and the
    gradient it receives (``2 x output_bytes``).
  - ``paper`` (section 5.1): every layer's input and output plus weights, gradients and momentum
    (the profile's ``paper_bytes``); the received and sent activations are a layer's input and
    output, so no cut buffers are added. About 2.7x ``exact`` for ResNet-18 (7.6 GB vs 3.0 GB).

  A stage *fits* when ``m_k <= memory budget of v_k``.

**Equipment utilisation index (eq. 9), objective ``paper`` (the default).** Algorithm 2 lines 6-8
give each node's time as the forward + backward of its own layers, ``T_p^k = c_k``, and line 9 the
mini-batch time ``T_all = T`` (compute and both transfer directions); eq. 9 compares the ratios
``T_p^k / T_all`` with ``1/n``::

    E = -ln( sum_k (c_k / T - 1/n)^2 )

(the printed formula is garbled; a constant factor inside the log would not change the ranking).
The shares sum to ``1 - tau``, ``tau`` the transfers' share of ``T``, so E penalises
communication as well as imbalance: padding a light stage with a large transfer does not help.

**Objective ``busy``** (our earlier reading, kept as a named alternative): the shares are the busy
times ``t_k / T``, which sum to 1, and E = ``-ln((1/n) * sum_k (t_k / T - 1/n)^2)``, their
population variance. It balances how long each node is occupied (sending included), which is what
a fixed chain waits for, but it rewards a cut whose big tensor pads a light stage.

Either way a perfectly balanced chain has E = +inf. Among equal E we prefer the smaller
bottleneck, then the smaller T, then the earlier cuts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.cwb.nodes_spec import NodeSpec
from engine.cwb.profile_format import Profile
from engine.cwb.transfer import Network
from engine.errors import PartitionError, ProfileError

ACCOUNTINGS = ("exact", "paper")
"""Memory accountings: ``exact`` (what training keeps) or ``paper`` (section 5.1's count)."""
OBJECTIVES = ("paper", "busy")
"""What E's shares are: ``paper`` (compute / T, Algorithm 2) or ``busy`` ((compute + send) / T)."""


@dataclass(frozen=True)
class Stage:
    """One partition of a plan and the node that runs it."""

    index: int
    """Position in the chain, 0-based."""
    node: str
    """Name of the node that runs the stage."""
    board: str
    """Board model of that node."""
    first_layer: int
    """Index of the stage's first layer."""
    last_layer: int
    """Index of the stage's last layer (inclusive)."""
    compute_ms: float
    """Forward + backward of the stage's layers on this node (profile time / speed)."""
    send_ms: float
    """Transfers this node sends per mini-batch: activation forward + gradient backward."""
    memory_bytes: int
    """Training memory of the stage incl. cut buffers."""
    memory_budget: int
    """Memory budget of the node."""
    share: float
    """This node's share of T in E: ``compute_ms / T`` (objective ``paper``) or ``busy_ms / T`` (``busy``)."""

    @property
    def busy_ms(self) -> float:
        """Compute + send: the node's busy time in one mini-batch."""
        return self.compute_ms + self.send_ms

    @property
    def fits(self) -> bool:
        """True when the stage fits its node's memory budget."""
        return self.memory_bytes <= self.memory_budget


@dataclass(frozen=True)
class Candidate:
    """A cut set on an ordered chain of nodes, scored by the cost model above."""

    method: str
    """Which search produced it: ``cwb``, ``pipedream`` or ``gpipe``."""
    cuts: tuple[int, ...]
    """Index of the layer each cut follows, increasing; ``n - 1`` of them."""
    cut_names: tuple[str, ...]
    """Name of the layer each cut follows."""
    stages: tuple[Stage, ...]
    """The stages in chain order."""
    cut_transfer_ms: tuple[float, ...]
    """Per cut: forward activation + backward gradient time."""
    minibatch_ms: float
    """T of eq. 8 (sum of busy times)."""
    variance: float
    """The bracket of eq. 9: squared deviation of the shares from ``1/n`` (see the module docstring)."""
    objective: str = "paper"
    """Which shares E compares: ``paper`` or ``busy`` (``OBJECTIVES``)."""

    @property
    def utilisation_index(self) -> float:
        """E of eq. 9: ``-ln(variance)``; +inf for a perfectly balanced chain."""
        return math.inf if self.variance <= 0 else -math.log(self.variance)

    @property
    def transfer_share(self) -> float:
        """tau: the share of T spent on the wire (forward activations + backward gradients)."""
        if self.minibatch_ms <= 0:
            return 0.0
        return sum(stage.send_ms for stage in self.stages) / self.minibatch_ms

    @property
    def fits(self) -> bool:
        """True when every stage fits its node."""
        return all(stage.fits for stage in self.stages)

    @property
    def bottleneck_ms(self) -> float:
        """Busy time of the busiest node."""
        return max(stage.busy_ms for stage in self.stages)

    @property
    def order(self) -> tuple[str, ...]:
        """Node names in chain order."""
        return tuple(stage.node for stage in self.stages)

    def rank_key(self) -> tuple:
        """Sort key, best first: larger E, then smaller bottleneck, T, earlier cuts."""
        return (self.variance, self.bottleneck_ms, self.minibatch_ms, self.cuts, self.order)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` (E = null when infinite)."""
        index = self.utilisation_index
        return {
            "method": self.method,
            "objective": self.objective,
            "cuts": list(self.cuts),
            "cut_after": list(self.cut_names),
            "utilisation_index": None if math.isinf(index) else index,
            "balanced": math.isinf(index),
            "variance": self.variance,
            "minibatch_ms": self.minibatch_ms,
            "transfer_share": self.transfer_share,
            "bottleneck_ms": self.bottleneck_ms,
            "fits": self.fits,
            "cut_transfer_ms": list(self.cut_transfer_ms),
            "stages": [
                {
                    "node": s.node,
                    "board": s.board,
                    "first_layer": s.first_layer,
                    "last_layer": s.last_layer,
                    "compute_ms": s.compute_ms,
                    "send_ms": s.send_ms,
                    "busy_ms": s.busy_ms,
                    "share": s.share,
                    "memory_bytes": s.memory_bytes,
                    "memory_budget": s.memory_budget,
                    "fits": s.fits,
                }
                for s in self.stages
            ],
        }


def check_choice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else PartitionError naming the valid ones (one line)."""
    if value not in choices:
        raise PartitionError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}")
    return value


class CostModel:
    """Prefix sums of a profile so any stage is costed in O(1); shared by search and baselines.

    ``accounting`` picks the memory count and ``objective`` the shares of E (module docstring).
    Raises PartitionError for an unknown choice, ProfileError when ``paper`` accounting is asked
    of a profile written without the paper's count.
    """

    def __init__(self, profile: Profile, network: Network, *, accounting: str = "exact", objective: str = "paper") -> None:
        self.profile = profile
        self.network = network
        self.accounting = check_choice("memory accounting", accounting, ACCOUNTINGS)
        self.objective = check_choice("objective", objective, OBJECTIVES)
        if accounting == "paper" and not profile.has_paper_bytes:
            raise ProfileError(
                "this profile has no paper memory count (paper_bytes); re-profile it with `litesrl profile` "
                "or use --memory-accounting exact"
            )
        self.q = len(profile.layers)
        self._compute = [0.0]
        self._state = [0]
        for index, layer in enumerate(profile.layers):
            # Stage 1 reads and augments the batch: its data time rides on the first layer.
            data = profile.data_ms if index == 0 else 0.0
            self._compute.append(self._compute[-1] + layer.compute_ms + data)
            held = layer.paper_bytes if accounting == "paper" else layer.state_bytes
            assert held is not None  # paper accounting was refused above for a profile without paper_bytes
            self._state.append(self._state[-1] + held)
        self._out = [layer.output_bytes for layer in profile.layers]
        self._out_suffix_max = self._out[:]
        for i in range(self.q - 2, -1, -1):
            self._out_suffix_max[i] = max(self._out_suffix_max[i], self._out_suffix_max[i + 1])

    def max_output_from(self, layer: int) -> int:
        """Largest ``output_bytes`` among layers ``layer .. q-1`` (bounds the transfers still to come)."""
        return self._out_suffix_max[layer]

    def profile_ms(self, start: int, end: int) -> float:
        """Forward + backward of layers ``[start, end)`` on the profiled board (+ data work when ``start`` is 0)."""
        return self._compute[end] - self._compute[start]

    def compute_ms(self, start: int, end: int, node: NodeSpec) -> float:
        """Forward + backward of layers ``[start, end)`` on ``node``."""
        return (self._compute[end] - self._compute[start]) / node.speed

    def state_bytes(self, start: int, end: int) -> int:
        """Memory of layers ``[start, end)`` without cut buffers, in this model's accounting; grows with ``end``."""
        return self._state[end] - self._state[start]

    def memory_bytes(self, start: int, end: int) -> int:
        """Training memory of a stage holding layers ``[start, end)``, cut buffers included (``exact``)."""
        memory = self._state[end] - self._state[start]
        if self.accounting == "paper":
            return memory
        if start > 0:
            memory += 2 * self._out[start - 1]
        if end < self.q:
            memory += 2 * self._out[end - 1]
        return memory

    def send_ms(self, start: int, end: int, node: NodeSpec, prev: NodeSpec | None, nxt: NodeSpec | None) -> float:
        """What ``node`` sends: activation forward at ``end`` (to ``nxt``), gradient back at ``start`` (to ``prev``)."""
        total = 0.0
        if end < self.q and nxt is not None:
            total += self.network.message_ms(self._out[end - 1], node.name, nxt.name)
        if start > 0 and prev is not None:
            total += self.network.message_ms(self._out[start - 1], node.name, prev.name)
        return total

    def cut_ms(self, cut: int, before: NodeSpec, after: NodeSpec) -> float:
        """Forward activation + backward gradient time of a cut after layer ``cut``."""
        forward, backward = self.network.cut_ms(self._out[cut], before.name, after.name)
        return forward + backward

    def evaluate(self, cuts: Sequence[int], order: Sequence[NodeSpec], method: str) -> Candidate:
        """Score the chain that cuts after layers ``cuts`` and runs stage k on ``order[k]``."""
        cuts = tuple(int(c) for c in cuts)
        n = len(cuts) + 1
        if len(order) != n:
            raise PartitionError(f"{n} stages need {n} nodes, got {len(order)}")
        if any(not 0 <= c < self.q - 1 for c in cuts) or list(cuts) != sorted(set(cuts)):
            raise PartitionError(f"cuts {list(cuts)} must be increasing layer indices in 0..{self.q - 2}")
        bounds = (0,) + tuple(c + 1 for c in cuts) + (self.q,)
        raw = []
        for k in range(n):
            start, end, node = bounds[k], bounds[k + 1], order[k]
            prev = order[k - 1] if k > 0 else None
            nxt = order[k + 1] if k + 1 < n else None
            raw.append((start, end, node, self.compute_ms(start, end, node), self.send_ms(start, end, node, prev, nxt)))
        total = sum(compute + send for *_, compute, send in raw)
        if self.objective == "paper":
            shares = [compute / total if total > 0 else 1.0 / n for *_, compute, send in raw]
            variance = sum((share - 1.0 / n) ** 2 for share in shares)
        else:
            shares = [(compute + send) / total if total > 0 else 1.0 / n for *_, compute, send in raw]
            variance = sum((share - 1.0 / n) ** 2 for share in shares) / n
        stages = tuple(
            Stage(
                index=k,
                node=node.name,
                board=node.board,
                first_layer=start,
                last_layer=end - 1,
                compute_ms=compute,
                send_ms=send,
                memory_bytes=self.memory_bytes(start, end),
                memory_budget=node.memory_bytes,
                share=shares[k],
            )
            for k, (start, end, node, compute, send) in enumerate(raw)
        )
        return Candidate(
            method=method,
            cuts=cuts,
            cut_names=tuple(self.profile.layers[c].name for c in cuts),
            stages=stages,
            cut_transfer_ms=tuple(self.cut_ms(c, order[k], order[k + 1]) for k, c in enumerate(cuts)),
            minibatch_ms=total,
            variance=variance,
            objective=self.objective,
        )
