"""The `kho` command fails with a clear one-line message and a non-zero exit, never a bare traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from kho.cli import main
from kho.config import PROJECT_ROOT
from kho.sources import ENTITIES


def test_status_of_a_stopped_warehouse_exits_non_zero(nothing_running: Path, capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    assert main(["warehouse", "status"]) == 1
    out = capsys.readouterr().out
    assert [line.split()[:3] for line in out.splitlines()[1:3]] == [["dc1", "127.0.0.1:1031", "down"],
                                                                    ["dc2", "127.0.0.1:1033", "down"]]
    assert "no node's Patroni answers" in out and "UNHEALTHY" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["warehouse", "restore", "--to", "2026-11-30T21:00:00", "--into", "x"], "has no time zone"),
    (["warehouse", "restore", "--to", "yesterday", "--into", "x"], "give 'latest' or a time"),
    (["warehouse", "rejoin"], "kho warehouse up"),
])
def test_warehouse_commands_refuse_in_one_line(nothing_running: Path, capsys: pytest.CaptureFixture[str],
                                               argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_sync_of_an_unknown_entity_names_the_known_ones(nothing_running: Path, capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert main(["sync", "population", "unicorns"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kho: error: unknown entity population.unicorns")
    assert "Traceback" not in err


def test_sync_without_a_warehouse_says_how_to_start_one(nothing_running: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KHO_REGISTRY_POPULATION_CLIENT_ID", "kho-prod")
    monkeypatch.setenv("KHO_REGISTRY_POPULATION_CLIENT_SECRET", "from-env")
    assert main(["sync", "population", "citizens"]) == 2
    err = capsys.readouterr().err
    assert "kho warehouse up" in err and "Traceback" not in err


def test_sync_without_registry_credentials_names_the_setting_and_generates_nothing(
        nothing_running: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "population", "citizens"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kho: error: registry population has no client credentials: set "
                          "KHO_REGISTRY_POPULATION_CLIENT_ID and KHO_REGISTRY_POPULATION_CLIENT_SECRET")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (nothing_running / "secrets").exists()


def test_a_bad_port_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    monkeypatch.setenv("KHO_PG_PORT", "fifty")
    assert main(["warehouse", "status"]) == 2
    assert "KHO_PG_PORT='fifty'" in capsys.readouterr().err


def test_registries_doc_lists_every_contract_field() -> None:
    doc = (PROJECT_ROOT / "docs" / "registries.md").read_text(encoding="utf-8")
    missing = [f"{e.qualified_name}.{name}" for e in ENTITIES for name in e.field_names
               if f"| `{name}` |" not in _section(doc, e.qualified_name)]
    assert not missing, f"docs/registries.md lacks {missing}: run `kho generate`"


def _section(doc: str, qualified_name: str) -> str:
    """The doc's text from the entity's heading to the next entity heading."""
    start = doc.index(f"#### `{qualified_name}`")
    end = doc.find("#### ", start + 1)
    return doc[start:end if end > 0 else len(doc)]
