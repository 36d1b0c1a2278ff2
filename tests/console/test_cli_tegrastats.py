"""`litesrl tegrastats`: log to JSON lines, the summary table, local streaming, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from console.cli import tegrastats as tegrastats_cli
from console.errors import ConsoleError
from nodes.telemetry.json_form import sample_from_json
from nodes.telemetry.tegrastats import parse_tegrastats_line
from tests.nodes.test_tegrastats import EXPECTED_LINES, data_lines
from tests.nodes.test_telemetry_sources import JTOP_SOCKET, NANO, write_fake_tegrastats

REPO = Path(__file__).resolve().parents[2]

# Runs the real `litesrl` entry point (COMMAND_MODULES, error translation). Typer turns an app
# with a single command and no callback into that command, which would drop the `tegrastats`
# word; a no-op root callback keeps the production spelling whatever else is registered.
ENTRY = """
import sys
from console.cli import main as cli
if cli.app.registered_callback is None and len(cli.app.registered_commands) + len(cli.app.registered_groups) < 2:
    cli.app.callback()(lambda: None)
sys.argv[0] = "litesrl"
cli.main()
"""


def litesrl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    tegrastats_cli.register(app)
    return app


def test_command_is_registered_in_the_real_cli():
    from console.cli.main import COMMAND_MODULES

    assert "console.cli.tegrastats" in COMMAND_MODULES


@pytest.mark.parametrize("name", sorted(EXPECTED_LINES))
def test_parse_json_gives_one_sample_per_line(cli, tegrastats_dir, name):
    result = CliRunner().invoke(cli, ["tegrastats", "--parse", str(tegrastats_dir / name), "--json"])
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    lines = data_lines(tegrastats_dir / name)
    assert len(out) == len(lines) == EXPECTED_LINES[name]
    for text, line in zip(out, lines):
        assert sample_from_json(json.loads(text)) == parse_tegrastats_line(line)


def test_unrecognised_lines_still_yield_samples(cli, tmp_path):
    log = tmp_path / "odd.log"
    log.write_text("# a comment\n\n   \nhello world\nRAM 5/10MB\n" + NANO + "\n")
    result = CliRunner().invoke(cli, ["tegrastats", "--parse", str(log), "--json"])
    assert result.exit_code == 0, result.output
    samples = [json.loads(text) for text in result.stdout.splitlines()]
    assert len(samples) == 3
    assert samples[0]["unknown"] == ["hello", "world"] and samples[0]["ram"] is None
    assert samples[1]["ram"] == {"used_mb": 5, "total_mb": 10, "lfb_blocks": None, "lfb_block_kb": None}
    assert samples[2]["derived"]["power_mw"] == 920


def test_parse_without_json_prints_a_summary(cli, tegrastats_dir):
    result = CliRunner().invoke(cli, ["tegrastats", "--parse", str(tegrastats_dir / "nano.txt")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "nano.txt: 10 samples" in out
    assert "GPU %" in out and "99.0" in out  # the GPU maximum
    assert "5206.0" in out  # the highest POM_5V_IN reading
    assert "power from: POM_5V_IN" in out
    assert "unrecognised tokens: 0" in out


def test_summary_of_dated_log_shows_the_span(cli, tegrastats_dir):
    result = CliRunner().invoke(cli, ["tegrastats", "--parse", str(tegrastats_dir / "xavier-nx.txt")])
    assert "time: 2025-10-01 20:05:55 .. 2025-10-01 20:06:34" in result.stdout


def test_mode_must_be_given_exactly_once(cli, tmp_path):
    for args in ([], ["--parse", str(tmp_path / "x"), "--local"]):
        result = CliRunner().invoke(cli, ["tegrastats", *args])
        assert isinstance(result.exception, ConsoleError)
        assert str(result.exception) == "give exactly one of --parse LOGFILE or --local"


def test_missing_log_is_one_error_line():
    result = litesrl("tegrastats", "--parse", "/no/such/tegrastats.log", "--json")
    assert result.returncode != 0
    assert result.stderr == "error: tegrastats log /no/such/tegrastats.log does not exist\n"
    assert result.stdout == ""


def test_folder_instead_of_log_is_one_error_line(tmp_path):
    result = litesrl("tegrastats", "--parse", str(tmp_path))
    assert result.returncode != 0
    assert result.stderr == f"error: tegrastats log {tmp_path} is not a file\n"


def test_bad_interval_is_one_error_line():
    result = litesrl("tegrastats", "--local", "--interval", "0", "--count", "1")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "error: telemetry interval must be between 0.01 and 3600 seconds, got 0.0"
    ]


def test_local_streams_json_from_psutil_here(tmp_path):
    result = litesrl(
        "tegrastats", "--local", "--json", "--count", "2", "--interval", "0.1",
        "--tegrastats-command", str(tmp_path / "no-tegrastats"),
    )
    assert result.returncode == 0, result.stderr
    samples = [sample_from_json(json.loads(text)) for text in result.stdout.splitlines()]
    assert len(samples) == 2
    expected = "jtop" if JTOP_SOCKET.exists() else "psutil"
    assert {s.source for s in samples} == {expected}
    assert result.stderr.startswith(f"source: {expected}")


@pytest.mark.skipif(JTOP_SOCKET.exists(), reason="a jtop service runs here and would be preferred")
def test_local_uses_tegrastats_when_it_runs(tmp_path):
    script = write_fake_tegrastats(tmp_path, [NANO] * 10)
    result = litesrl(
        "tegrastats", "--local", "--count", "3", "--interval", "0.05", "--tegrastats-command", str(script)
    )
    assert result.returncode == 0, result.stderr
    assert "source: tegrastats (jtop: jtop service unavailable" in result.stderr
    rows = result.stdout.splitlines()
    assert len(rows) == 3
    assert all("cpu 3.2% (4/4 cores)" in row and "ram 936/3964 MB" in row and "power 920 mW" in row for row in rows)
