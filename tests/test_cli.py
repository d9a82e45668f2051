"""Tests of the command line: explain's output, and one clear line for every user error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "events.jsonl"
CONFIG = ROOT / "config.toml"
NOW = "2026-11-23T10:20:00Z"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run replywatch in-process; return exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_json_has_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    """explain --format json prints one array of clocks with the documented fields."""
    code, out, _ = run(
        capsys,
        "--config",
        str(CONFIG),
        "explain",
        "--events",
        str(EXAMPLE),
        "--now",
        NOW,
        "--format",
        "json",
    )
    assert code == 0
    clocks = json.loads(out)
    assert isinstance(clocks, list)
    assert clocks
    for clock in clocks:
        for key in (
            "source",
            "conversation",
            "policy",
            "metric",
            "status",
            "started_at",
            "due_at",
            "stopped_at",
            "target_seconds",
            "elapsed_seconds",
            "paused_seconds",
        ):
            assert key in clock
    social = {
        c["conversation"]: c
        for c in clocks
        if c["policy"] == "social" and c["metric"] == "first_response"
    }
    answered = social["115000000000000001"]
    assert answered["status"] == "met"
    assert answered["elapsed_seconds"] == 270
    assert answered["stopped_at"] == "2026-11-23T10:04:30Z"
    unanswered = social["115000000000000002"]
    assert unanswered["status"] == "breached"
    assert unanswered["due_at"] == "2026-11-23T10:16:00Z"
    assert unanswered["stopped_at"] is None


def test_explain_table_gives_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    """The table names policy and priority per conversation and explains each clock."""
    code, out, _ = run(
        capsys, "--config", str(CONFIG), "explain", "--events", str(EXAMPLE), "--now", NOW
    )
    assert code == 0
    assert "acme-desk / 4711" in out
    assert "why:" in out
    assert "due moved: priority urgent" in out


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"source": "s"'], "events.jsonl:1: not a JSON object"),
        (
            [
                '{"source":"s","conversation":"c","id":"1","at":"2026-11-23T09:00:00","kind":"status",'
                '"status":"open"}'
            ],
            "events.jsonl:1: 'at' 2026-11-23T09:00:00 has no timezone",
        ),
        (
            [
                "",
                '{"source":"s","conversation":"c","id":"1","at":"2026-11-23T09:00:00Z","kind":"x"}',
            ],
            "events.jsonl:2: 'x' is not a valid EventKind",
        ),
    ],
    ids=["not-json", "naive-timestamp", "bad-kind"],
)
def test_explain_bad_events_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, lines: list[str], message: str
) -> None:
    """A bad events line is one error line naming file and line, exit 1."""
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "--config", str(CONFIG), "explain", "--events", str(path))
    assert code == 1
    assert err.strip().endswith(message)
    assert err.count("\n") == 1
    assert out == ""


def test_missing_events_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An unreadable events file is one line, exit 1."""
    code, _, err = run(
        capsys, "--config", str(CONFIG), "explain", "--events", str(tmp_path / "none.jsonl")
    )
    assert code == 1
    assert "none.jsonl: file not found" in err


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[[sources]]\nname = "x"\nkind = "zendeks"\n',
            "sources[0].kind: unknown source kind 'zendeks'",
        ),
        (
            '[[sources]]\nname = "d"\nkind = "zendesk"\nsubdomain = "a"\nemail = "o@a.example"\n'
            'token = "${RW_UNSET_VAR_FOR_TEST}"\n',
            "sources[0].token: environment variable RW_UNSET_VAR_FOR_TEST is not set",
        ),
        (
            '[[policies]]\nname = "p"\ncalendar = "office"\n',
            "policies[0].calendar: unknown calendar",
        ),
    ],
    ids=["unknown-kind", "missing-env", "unknown-calendar"],
)
def test_config_errors_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, toml: str, message: str
) -> None:
    """Config errors are one line naming file and key path, exit code 2."""
    path = tmp_path / "config.toml"
    path.write_text(toml)
    code, _, err = run(capsys, "--config", str(path), "check")
    assert code == 2
    assert f"{path}: {message}" in err
    assert err.count("\n") == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments are one line, exit code 2."""
    code, _, err = run(capsys, "explain", "--events")
    assert code == 2
    assert err.startswith("replywatch: ")
    assert err.count("\n") == 1
    code, _, err = run(capsys)
    assert code == 2
    assert "choose a command" in err


def test_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A database that cannot be reached is one line without the password, exit 1."""
    code, _, err = run(
        capsys,
        "--config",
        str(CONFIG),
        "--database",
        "postgresql://rw:hunter2@127.0.0.1:1/none",
        "db",
        "upgrade",
    )
    assert code == 1
    assert err.count("\n") == 1
    assert "hunter2" not in err
    assert "127.0.0.1:1" in err


def test_db_upgrade_then_again(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """db upgrade creates the schema, and a second run says it is current."""
    url = f"sqlite:///{tmp_path}/rw.db"
    code, out, _ = run(capsys, "--database", url, "db", "upgrade")
    assert code == 0
    assert "upgraded empty ->" in out
    code, out, _ = run(capsys, "--database", url, "db", "upgrade")
    assert code == 0
    assert "already at schema" in out


def test_module_entry_point_never_prints_a_traceback(tmp_path: Path) -> None:
    """python -m monitor with a broken config prints one line and no traceback."""
    path = tmp_path / "config.toml"
    path.write_text("[monitor]\ndatabase = 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(path), "run", "--headless"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "monitor.database" in result.stderr
