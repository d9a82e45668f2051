"""Tests that ``replywatch check`` probes every built-in kind, each against its faithful fake."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors import BUILTIN
from connectors.fakes._base import serve
from monitor.cli import main
from monitor.demo import FAKE_APP_PASSWORD, FAKE_TOKEN, demo_config, make_sources

SECRETS = (FAKE_TOKEN, FAKE_APP_PASSWORD)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    assert isinstance(value, Mapping), value
    return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}"
                           for k, v in value.items()) + "}"


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    """Write the demo's TOML-shaped config data as a TOML file only its owner can read."""
    lines: list[str] = []
    for table in ("monitor",):
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in data[table].items()]
    for array in ("sources", "policies"):
        for entry in data[array]:
            lines.append(f"\n[[{array}]]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


@contextlib.asynccontextmanager
async def served_config(tmp_path: Path, *, secret: str | None = None) -> AsyncIterator[Path]:
    """Every built-in kind's fake served, and a config file with one source per kind.

    With ``secret``, every credential in the file is replaced by it (so each is refused).
    """
    sources = make_sources(sorted(BUILTIN), lambda: datetime.now(UTC))
    async with contextlib.AsyncExitStack() as stack:
        entries = []
        for source in sources:
            url = await stack.enter_async_context(serve(source.app()))
            settings = source.settings(url)
            if secret is not None:
                settings = {key: secret if value in SECRETS else value
                            for key, value in settings.items()}
            entries.append(settings)
        yield write_config(tmp_path / "config.toml",
                           demo_config(entries, database=f"sqlite:///{tmp_path}/check.db"))


async def test_check_probes_every_kind(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """One ``ok`` line per kind, saying who the credentials authenticate as; exit 0."""
    async with served_config(tmp_path) as config:
        code = await asyncio.to_thread(main, ["--config", str(config), "check"])
    out = capsys.readouterr().out
    assert code == 0, out
    probed = {line.split("(")[1].split(")")[0]: line for line in out.splitlines()
              if " source " in line}
    assert set(probed) == set(BUILTIN)
    assert all(line.startswith("ok ") for line in probed.values()), out


async def test_check_fails_every_kind_with_refused_credentials(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused credentials give one FAILED line per kind, none showing the secret; exit 1."""
    wrong = "wrong-secret-4242"
    async with served_config(tmp_path, secret=wrong) as config:
        code = await asyncio.to_thread(main, ["--config", str(config), "check"])
    out = capsys.readouterr().out
    assert code == 1, out
    failed = [line for line in out.splitlines() if line.startswith("FAILED  source ")]
    assert len(failed) == len(BUILTIN), out
    assert {line.split("(")[1].split(")")[0] for line in failed} == set(BUILTIN)
    assert wrong not in out
