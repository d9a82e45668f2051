"""Tests of sending the report (to real local chat receivers and SMTP) and of the schedule."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from receivers import (
    SIGNING_SECRET,
    ChatKind,
    Reply,
    receive,
    smtp_receiver,
    target_for,
)
from test_report import CONFIG_DATA, NOW, TIMEZONE, WEEK, two_weeks_of_events
from test_report_storage import _fill

from monitor.config import AlertTargetConfig, Config, parse_config
from monitor.events import Clock, ClockState, Metric
from monitor.notifiers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from monitor.reports.aggregate import ConversationDetail, Report, build_report
from monitor.reports.markdown import render_markdown
from monitor.reports.send import send_report
from monitor.reports.tabular import report_json
from monitor.reports.weekly import run_weekly, schedule_weekly
from monitor.scheduler import MonitorScheduler
from monitor.storage import Store

HOSTILE = "<!channel> *x* [y](javascript:z) @everyone"


def hostile_report() -> Report:
    """A week whose worst breach has a hostile conversation id and a real link."""
    stopped = WEEK.start + timedelta(days=2)
    clock = Clock(source="acme-desk", conversation=HOSTILE, policy="desk",
                  metric=Metric.FIRST_RESPONSE, cycle=0, state=ClockState.BREACHED,
                  started_at=stopped - timedelta(hours=3), due_at=stopped - timedelta(hours=2),
                  stopped_at=stopped, target_seconds=3600, elapsed_seconds=10800,
                  paused_seconds=0, stopped_by="kim", assignee="lee")
    return build_report(
        WEEK, [clock], generated_at=NOW,
        details={("acme-desk", HOSTILE): ConversationDetail("https://acme.example/t/1", "s")},
    )


def _target_data(target: AlertTargetConfig) -> dict[str, Any]:
    """The TOML-shaped table of a target, secrets included (as a config file has them)."""
    data = target.model_dump(mode="json", exclude_defaults=True)
    for secret in ("url", "secret", "password"):
        value = getattr(target, secret)
        if value is not None:
            data[secret] = value.get_secret_value()
    return data


def settings(*targets: AlertTargetConfig, folder: Path | None = None) -> Config:
    """The test config with these alert targets, all in [reports.weekly].send_to."""
    weekly: dict[str, Any] = {"at": "mon 09:00", "send_to": [t.name for t in targets]}
    if folder is not None:
        weekly["folder"] = str(folder)
    return parse_config({**CONFIG_DATA, "alerts": [_target_data(t) for t in targets],
                         "reports": {"weekly": weekly}})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session, as the service holds one."""
    async with aiohttp.ClientSession() as client:
        yield client


def _slack(received: Any) -> None:
    text = received.json()["text"]
    assert text.startswith("*SLA report 2026-W47*")
    assert "&lt;!channel&gt;" in text
    assert "<!channel>" not in text
    assert "<https://acme.example/t/1|acme-desk / &lt;!channel&gt;" in text


def _mattermost(received: Any) -> None:
    text = received.json()["text"]
    assert text.startswith("**SLA report 2026-W47**")
    assert "@everyone" not in text
    assert "\\*x\\*" in text
    assert "](https://acme.example/t/1)" in text
    assert "javascript:z)" not in text.replace("javascript:z\\)", "")


def _discord(received: Any) -> None:
    assert (received.header("Content-Type") or "").startswith("multipart/form-data")
    body = received.body.decode()
    assert '"allowed_mentions": {"parse": []}' in body
    assert 'filename="sla-report-2026-W47.html"' in body
    assert "<!DOCTYPE html>" in body
    assert "@everyone" not in body.split("<!DOCTYPE html>")[0]


def _teams(received: Any) -> None:
    card = received.json()["attachments"][0]["content"]
    runs = [run for block in card["body"] for run in block["inlines"]]
    assert all(run["type"] == "TextRun" for run in runs)
    linked = [run for run in runs if "selectAction" in run]
    assert linked[0]["text"] == f"acme-desk / {HOSTILE}"
    assert linked[0]["selectAction"]["url"] == "https://acme.example/t/1"


def _google_chat(received: Any) -> None:
    payload = received.json()
    text = payload["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"]
    assert "<b>SLA report 2026-W47</b>" in text
    assert "&lt;!channel&gt;" in text
    assert '<a href="https://acme.example/t/1">' in text


def _webhook(received: Any) -> None:
    timestamp = received.header(TIMESTAMP_HEADER)
    assert received.header(SIGNATURE_HEADER) == sign(SIGNING_SECRET, timestamp, received.body)
    payload = received.json()
    assert payload["type"] == "replywatch.report"
    assert payload["report"]["totals"] == report_json(hostile_report())["totals"]
    assert payload["html"].startswith("<!DOCTYPE html>")


CHECKS = {"slack": _slack, "mattermost": _mattermost, "discord": _discord, "teams": _teams,
          "google_chat": _google_chat, "webhook": _webhook}


@pytest.mark.parametrize("kind", list(CHECKS))
async def test_each_chat_gets_the_summary_in_its_dialect(
    kind: ChatKind, session: aiohttp.ClientSession
) -> None:
    """Every chat kind accepts the summary; outside text is inert, links only https."""
    async with receive(kind) as receiver:
        results = await send_report(settings(target_for(receiver)), hostile_report(), session,
                                    now=NOW)
    assert results == [("chat", None)]
    (received,) = receiver.requests
    CHECKS[kind](received)


async def test_email_gets_the_html_report(session: aiohttp.ClientSession) -> None:
    """The email's HTML part is the report page; its text part is the summary."""
    report = hostile_report()
    async with smtp_receiver() as server:
        target = AlertTargetConfig.model_validate({
            "name": "mail", "kind": "email", "smtp_host": "127.0.0.1",
            "smtp_port": server.port, "smtp_security": "none",
            "sender": "replywatch@acme.example", "recipients": ["boss@acme.example"],
        })
        results = await send_report(settings(target), report, session, now=NOW)
    assert results == [("mail", None)]
    (mail,) = server.mails
    parsed = message_from_bytes(mail.data, policy=policy.default)
    assert parsed["Subject"] == "[replywatch] SLA report 2026-W47"
    page = parsed.get_body(("html",))
    text = parsed.get_body(("plain",))
    assert page is not None
    assert text is not None
    assert page.get_content().startswith("<!DOCTYPE html>")
    assert "&lt;!channel&gt;" in page.get_content()
    summary = render_markdown(report, full_report="sla-report-2026-W47.html")
    assert text.get_content().replace("\r\n", "\n") == summary


async def test_one_refusing_target_does_not_stop_the_others(
    session: aiohttp.ClientSession,
) -> None:
    """A target answering 500 is reported; the next one still gets the report."""
    async with receive("slack") as slack, receive("mattermost") as mattermost:
        slack.script(Reply.text(500, "boom"))
        config = settings(target_for(slack, "first"), target_for(mattermost, "second"))
        results = await send_report(config, hostile_report(), session, now=NOW)
    assert results[0][0] == "first"
    assert (results[0][1] or "").startswith("HTTP 500")
    assert results[1] == ("second", None)
    assert len(mattermost.requests) == 1


async def test_the_weekly_job_writes_and_sends(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """run_weekly writes last week's four files to the folder and sends the summary."""
    async with receive("slack") as slack:
        config = settings(target_for(slack), folder=tmp_path / "reports")
        with Store.open(f"sqlite:///{tmp_path}/s.db") as store:
            _fill(store, two_weeks_of_events(conversations=60))
            paths = await run_weekly(config, store, now=lambda: NOW, session=session)
    assert sorted(path.name for path in paths.values()) == [
        "sla-report-2026-W47.csv", "sla-report-2026-W47.html", "sla-report-2026-W47.json",
        "sla-report-2026-W47.md"]
    data = json.loads(paths["json"].read_text())
    assert data["period"]["label"] == "2026-W47"
    assert data["totals"]["clocks"]["current"] > 0
    assert "sla-report-2026-W47.html" in paths["md"].read_text()
    assert slack.requests[0].json()["text"].startswith("*SLA report 2026-W47*")


async def test_the_schedule_is_monday_morning_in_the_team_timezone(tmp_path: Path) -> None:
    """[reports.weekly].at is a cron job at that local weekday and time."""
    scheduler = MonitorScheduler({})
    with Store.open(f"sqlite:///{tmp_path}/s.db") as store:
        schedule_weekly(scheduler, settings(), store, now=lambda: NOW, session=None)
        scheduler.scheduler.start()
        try:
            job = scheduler.scheduler.get_job("report:weekly")
            assert job is not None
            local = job.next_run_time.astimezone(ZoneInfo(TIMEZONE))
        finally:
            await scheduler.stop()
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)


async def test_the_scheduled_report_is_made_once_per_week_across_workers(tmp_path: Path) -> None:
    """Two processes scheduling the weekly report on one store: the week is made once."""
    folder = tmp_path / "reports"
    with Store.open(f"sqlite:///{tmp_path}/s.db") as store:
        jobs = []
        for _ in range(2):
            scheduler = MonitorScheduler({})
            schedule_weekly(scheduler, settings(folder=folder), store, now=lambda: NOW,
                            session=None)
            job = scheduler.scheduler.get_job("report:weekly")
            assert job is not None
            jobs.append(job.func)
        await jobs[0]()
        made = sorted(folder.iterdir())
        assert made
        for path in made:
            path.unlink()
        await jobs[1]()
        assert list(folder.iterdir()) == []
