"""Cut transfer times: bytes / bandwidth + latency each way, with per-link overrides."""

import pytest

from engine.cwb.transfer import Network
from engine.errors import ConfigError


def test_message_time_is_bytes_over_bandwidth_plus_latency():
    net = Network(bandwidth=125_000_000, latency_ms=0.2)  # 1 Gbit/s
    assert net.message_ms(125_000_000, "a", "b") == pytest.approx(1000.2)
    assert net.cut_ms(12_500_000, "a", "b") == pytest.approx((100.2, 100.2))


def test_per_link_overrides_are_directional():
    net = Network(bandwidth=1e6, links=(("orin", "tx2", 1e7),))
    forward, backward = net.cut_ms(1e6, "orin", "tx2")
    assert forward == pytest.approx(100.0)
    assert backward == pytest.approx(1000.0)
    assert net.has_links and net.named_in_links() == {"orin", "tx2"}
    assert net.slowest_bandwidth() == 1e6


def test_matrix_form():
    net = Network.from_matrix(["a", "b"], [[None, 2e6], [1e6, None]], latency_ms=1.0)
    assert net.message_ms(2e6, "a", "b") == pytest.approx(1001.0)
    assert net.message_ms(2e6, "b", "a") == pytest.approx(2001.0)
    assert net.bandwidth == 1e6


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(bandwidth=0), "greater than zero"),
        (dict(bandwidth=1.0, latency_ms=-1), "latency must not be negative"),
        (dict(bandwidth=1.0, links=(("a", "b", 0.0),)), "link a -> b"),
    ],
)
def test_bad_networks(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Network(**kwargs)


def test_matrix_must_be_square():
    with pytest.raises(ConfigError, match="2x2"):
        Network.from_matrix(["a", "b"], [[None, 1.0]])
