"""Time to move a cut's tensors between two nodes: bytes / bandwidth + latency, per direction.

At a cut after layer ``c`` the forward activation (``output_bytes[c]``) crosses from the node
before the cut to the node after it, and in backward the gradient of that activation (the same
size) crosses back. The two directions may use links of different speed, so a per-link table
(node name -> node name) can override the default bandwidth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.errors import ConfigError


@dataclass(frozen=True)
class Network:
    """Links between nodes, as used to cost the tensors crossing each cut."""

    bandwidth: float
    """Bytes per second of every link not named in ``links``."""

    latency_ms: float = 0.0
    """Fixed cost of one message (one direction of one cut), in milliseconds."""

    links: tuple[tuple[str, str, float], ...] = ()
    """Per-link overrides ``(from_node, to_node, bytes_per_second)``; a link is one direction."""

    _table: Mapping[tuple[str, str], float] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.bandwidth > 0:
            raise ConfigError(f"bandwidth must be greater than zero, got {self.bandwidth!r} bytes/s")
        if self.latency_ms < 0:
            raise ConfigError(f"latency must not be negative, got {self.latency_ms!r} ms")
        table: dict[tuple[str, str], float] = {}
        for src, dst, rate in self.links:
            if not rate > 0:
                raise ConfigError(f"link {src} -> {dst}: bandwidth must be greater than zero, got {rate!r}")
            table[(src, dst)] = float(rate)
        object.__setattr__(self, "_table", table)

    @classmethod
    def from_matrix(
        cls, names: Iterable[str], matrix: Iterable[Iterable[float | None]], latency_ms: float = 0.0
    ) -> Network:
        """A network from a square matrix ``matrix[i][j]`` = bytes/s from ``names[i]`` to ``names[j]``.

        The default bandwidth (for nodes outside the matrix) is the slowest link; the
        diagonal and ``None`` entries are ignored.
        """
        names = list(names)
        rows = [list(row) for row in matrix]
        if len(rows) != len(names) or any(len(row) != len(names) for row in rows):
            raise ConfigError(f"bandwidth matrix must be {len(names)}x{len(names)} for nodes {names}")
        links = tuple(
            (src, dst, float(rate))
            for i, src in enumerate(names)
            for j, dst in enumerate(names)
            if i != j and (rate := rows[i][j]) is not None
        )
        if not links:
            raise ConfigError("bandwidth matrix has no off-diagonal entries")
        return cls(bandwidth=min(rate for _, _, rate in links), latency_ms=latency_ms, links=links)

    @property
    def has_links(self) -> bool:
        """True when some link differs from the default, so the node order changes transfer times."""
        return bool(self._table)

    def named_in_links(self) -> frozenset[str]:
        """Names of the nodes that appear in a per-link override."""
        return frozenset(name for pair in self._table for name in pair)

    def slowest_bandwidth(self) -> float:
        """Bytes per second of the slowest link (the default included)."""
        return min([self.bandwidth, *self._table.values()])

    def bandwidth_between(self, src: str, dst: str) -> float:
        """Bytes per second from node ``src`` to node ``dst``."""
        return self._table.get((src, dst), self.bandwidth)

    def message_ms(self, nbytes: float, src: str, dst: str) -> float:
        """Milliseconds for one message of ``nbytes`` from ``src`` to ``dst`` (latency included)."""
        return nbytes / self.bandwidth_between(src, dst) * 1000.0 + self.latency_ms

    def cut_ms(self, nbytes: float, before: str, after: str) -> tuple[float, float]:
        """(forward activation ms ``before -> after``, backward gradient ms ``after -> before``) for one cut."""
        return self.message_ms(nbytes, before, after), self.message_ms(nbytes, after, before)
