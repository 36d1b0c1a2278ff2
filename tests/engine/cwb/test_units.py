"""Human units: sizes, bandwidths and durations, and their precise errors."""

import pytest

from engine.cwb.units import format_bandwidth, format_bytes, parse_bandwidth, parse_duration_ms, parse_size
from engine.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3GB", 3_000_000_000), ("512MiB", 512 * 2**20), ("7599.7MB", 7_599_700_000), ("1kB", 1000),
     ("2GiB", 2 * 2**30), ("100", 100), (42, 42), ("0.5 TB", 500_000_000_000)],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1Gbit", 125_000_000), ("100Mbit/s", 12_500_000), ("100Mbps", 12_500_000), ("125MB/s", 125_000_000),
     ("1gbit", 125_000_000), ("8bit", 1.0), ("1MiB/s", 2**20)],
)
def test_bandwidths_are_bytes_per_second(text, expected):
    assert parse_bandwidth(text) == pytest.approx(expected)


@pytest.mark.parametrize(("text", "expected"), [("2.5ms", 2.5), ("0.2ms", 0.2), ("250us", 0.25), ("1s", 1000.0)])
def test_durations_are_milliseconds(text, expected):
    assert parse_duration_ms(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("parse", "text", "fragment"),
    [
        (parse_bandwidth, "1Gb", "ambiguous"),
        (parse_bandwidth, "125mb/s", "ambiguous"),
        (parse_bandwidth, "100", "needs a unit"),
        (parse_bandwidth, 100, "needs a unit"),
        (parse_bandwidth, "0Gbit", "greater than zero"),
        (parse_bandwidth, "1Gfoo", "unknown unit 'Gfoo'"),
        (parse_bandwidth, "fast", "not a number"),
        (parse_size, "3Gbit", "in bits"),
        (parse_size, "3GQ", "unknown unit"),
        (parse_size, "-3GB", "not a number"),
        (parse_duration_ms, "2.5", "needs a unit"),
        (parse_duration_ms, "2.5 hours", "unknown unit .hours."),
        (parse_duration_ms, "2.5d", "unknown unit 'd'"),
    ],
)
def test_bad_units_say_what_is_wrong(parse, text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse(text)


def test_formatting_reads_back():
    assert format_bytes(3e9) == "3.00 GB"
    assert parse_size(format_bytes(3e9).replace(" ", "")) == 3_000_000_000
    assert format_bandwidth(125_000_000) == "1 Gbit/s"
