"""Tests of ``replywatch report``: periods, forms, files, and one clear line per mistake."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_report import CONFIG_DATA, TIMEZONE, config, two_weeks_of_events
from test_report_storage import _fill

from monitor.cli import main
from monitor.reports.period import last_complete_week
from monitor.storage import Store


def _toml(value: Any) -> str:
    """A TOML value (the config's values are strings, numbers, booleans, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A config file and a filled SQLite store: the two weeks of test_report."""
    folder = tmp_path_factory.mktemp("cli")
    database = f"sqlite:///{folder}/store.db"
    lines = [f"[monitor]\ndatabase = {json.dumps(database)}\ntimezone = {json.dumps(TIMEZONE)}"]
    for name, calendar in CONFIG_DATA["calendars"].items():
        lines.append(f"[calendars.{name}]\n" + "\n".join(
            f"{key} = {_toml(value)}" for key, value in calendar.items()))
    for table in ("sources", "policies"):
        for entry in CONFIG_DATA[table]:
            lines.append(f"[[{table}]]\n" + "\n".join(
                f"{key} = {_toml(value)}" for key, value in entry.items()))
    path = folder / "config.toml"
    path.write_text("\n\n".join(lines) + "\n")
    assert tomllib.loads(path.read_text())["policies"][0]["name"] == "desk"
    with Store.open(database) as store:
        _fill(store, two_weeks_of_events(conversations=80))
    return path, folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run replywatch in-process; return exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_of_a_week_on_standard_output(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """--week and --format json print the week's report."""
    path, _ = setup
    code, out, _ = run(capsys, "--config", str(path), "report", "--week", "2026-W47",
                       "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["period"]["label"] == "2026-W47"
    assert data["totals"]["clocks"]["current"] > 0
    assert [p["policy"] for p in data["policies"]] == [p.name for p in config().policies]


@pytest.mark.parametrize(
    ("out", "format_", "name", "start"),
    [
        pytest.param("", "md", "sla-report-2026-W47.md", "**SLA report 2026-W47**",
                     id="folder-gets-the-standard-name"),
        pytest.param("week.csv", None, "week.csv", "section,policy,dimension",
                     id="form-from-the-extension"),
        pytest.param("week.html", None, "week.html", "<!DOCTYPE html>", id="html-file"),
    ],
)
def test_out_writes_a_file(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path,
    out: str, format_: str | None, name: str, start: str,
) -> None:
    """--out writes a file (a folder gets sla-report-<week>.<form>)."""
    path, _ = setup
    extra = ["--format", format_] if format_ else []
    code, _, err = run(capsys, "--config", str(path), "report", "--week", "2026-W47",
                       "--out", str(tmp_path / out), *extra)
    assert code == 0
    written = tmp_path / name
    assert written.read_text().startswith(start)
    assert f"wrote {written}" in err


def test_a_date_range(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """--from and --to report those days, both included, against the days just before."""
    path, _ = setup
    code, out, _ = run(capsys, "--config", str(path), "report", "--from", "2026-11-16",
                       "--to", "2026-11-18", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["period"]["label"] == "2026-11-16 to 2026-11-18"
    assert data["previous_period"]["first_day"] == "2026-11-13"
    assert [day["day"] for day in data["days"]] == ["2026-11-16", "2026-11-17", "2026-11-18"]


def test_the_default_is_the_last_complete_week(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """With no period given, the report is the last week that ended in the timezone."""
    path, _ = setup
    code, out, _ = run(capsys, "--config", str(path), "report", "--format", "json")
    assert code == 0
    expected = last_complete_week(datetime.now(UTC), TIMEZONE).label
    assert json.loads(out)["period"]["label"] == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--week", "2026-47"], "report: '2026-47' is not an ISO week",
                     id="bad-week"),
        pytest.param(["--week", "2026-W47", "--from", "2026-11-16", "--to", "2026-11-17"],
                     "give --week or --from/--to, not both", id="both"),
        pytest.param(["--from", "2026-11-16"], "--from and --to go together", id="from-alone"),
        pytest.param(["--from", "2026-11-18", "--to", "2026-11-16"], "before it starts",
                     id="backwards"),
        pytest.param(["--from", "16/11/2026", "--to", "2026-11-17"],
                     "is not a date like 2026-11-16", id="not-a-date"),
        pytest.param(["--send"], "--send needs [reports.weekly].send_to", id="nowhere-to-send"),
        pytest.param(["--format", "pdf"], "invalid choice", id="unknown-format"),
    ],
)
def test_mistakes_are_one_line(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], argv: list[str],
    message: str,
) -> None:
    """A wrong period or option ends with one line naming it and exit code 2."""
    path, _ = setup
    code, out, err = run(capsys, "--config", str(path), "report", *argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
