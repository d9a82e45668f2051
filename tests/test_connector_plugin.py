"""Tests that a third-party connector plugs in through its entry point and passes the contract.

The plug-in is ``tests/plugin_example``: a package and the ``.dist-info`` folder its
``pyproject.toml`` would install. Putting the folder on the import path registers it,
exactly as ``pip install`` would, without installing anything.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import registry
from connectors.fakes._base import ContractCase

TESTS = Path(__file__).resolve().parent
PLUGIN = TESTS / "plugin_example"
CONTRACT = TESTS / "test_connector_contract.py"


@pytest.fixture
def plugin_on_path() -> Iterator[None]:
    """The example plug-in importable and registered for this test only."""
    sys.path.insert(0, str(PLUGIN))
    importlib.invalidate_caches()
    registry.cache_clear()
    try:
        yield
    finally:
        sys.path.remove(str(PLUGIN))
        importlib.invalidate_caches()
        registry.cache_clear()


def run_contract(kinds: str) -> subprocess.CompletedProcess[str]:
    """Run the contract test file as a plug-in's author would, with the plug-in on the path."""
    env = dict(os.environ, REPLYWATCH_CONTRACT_KINDS=kinds,
               PYTHONPATH=os.pathsep.join(filter(None, [str(PLUGIN),
                                                        os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CONTRACT)],
        cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.usefixtures("plugin_on_path")
def test_entry_point_registers_the_plugin_kind() -> None:
    """The entry point adds ``example`` to the registry, beside every built-in kind."""
    connector = registry()["example"]
    assert (connector.__module__, connector.__name__) == (
        "replywatch_example.connector", "ExampleConnector")
    assert {"zendesk", "mastodon"} <= set(registry())


@pytest.mark.usefixtures("plugin_on_path")
def test_contract_case_comes_from_the_connector_module() -> None:
    """The contract test finds the plug-in's fake through its connector module."""
    from test_connector_contract import contract_case

    case = contract_case("example")
    assert isinstance(case, ContractCase)
    assert case.kind == "example"
    assert type(case.controls).__module__ == "connectors.fakes._base"


def test_registry_forgets_the_plugin_without_its_path() -> None:
    """Without the plug-in on the path there is no ``example`` kind (nothing was installed)."""
    assert "example" not in registry()


def test_plugin_passes_the_contract_test() -> None:
    """``REPLYWATCH_CONTRACT_KINDS=example pytest tests/test_connector_contract.py`` passes."""
    result = run_contract("example")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout, result.stdout
    assert "[example]" not in result.stdout  # quiet mode names nothing unless it fails


def test_an_unregistered_kind_is_a_clear_error() -> None:
    """A kind no connector registers stops the run, naming the registered kinds."""
    result = run_contract("nope")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "REPLYWATCH_CONTRACT_KINDS: no connector registered as 'nope'" in output
    assert "registered: bluesky, example, freshdesk" in output
