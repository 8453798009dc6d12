"""The schedules under deploy/ run commands that exist, with the environment they need."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import pytest

from pipelines.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / name)
    return parser


def quorum_args(command: str) -> list[str]:
    words = shlex.split(command)
    index = next(i for i, w in enumerate(words) if w.endswith("/.venv/bin/quorum-sms"))
    return words[index + 1 :]


@pytest.mark.parametrize("name", ["sync", "reconcile"])
def test_systemd_units_run_a_real_command_with_the_environment(name):
    service = unit(f"quorum-sms-{name}.service")
    assert service["Service"]["Type"] == "oneshot"  # never two at once
    assert service["Service"]["EnvironmentFile"] == "/etc/quorum-sms.env"
    args = quorum_args(service["Service"]["ExecStart"])
    assert args == [name]
    build_parser().parse_args(args)
    timer = unit(f"quorum-sms-{name}.timer")
    assert timer["Timer"]["Persistent"] == "true" and timer["Timer"]["OnCalendar"]


def test_cron_lines_run_real_commands_and_load_the_environment():
    lines = [
        line for line in (DEPLOY / "crontab.example").read_text().splitlines()
        if re.match(r"^[0-9*]", line)
    ]
    assert len(lines) == 2
    for line in lines:
        assert ". /etc/quorum-sms.env" in line
        command = line.split(None, 5)[5]
        invocation = command.split("set +a;")[1].split(">>")[0]
        build_parser().parse_args(quorum_args(invocation))
        assert "|| {" in command and "tail -n" in command  # only a failure prints


def test_the_environment_example_names_every_required_variable():
    text = (DEPLOY / "quorum-sms.env.example").read_text()
    for name in ("QUORUM_USERNAME", "QUORUM_API_KEY", "QUORUM_DATABASE", "QUORUM_WEBHOOK_URL"):
        assert name in text
