"""The `kho` command fails with a clear one-line message and a non-zero exit, never a bare traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kho.cli import build_parser, main
from kho.config import PROJECT_ROOT
from kho.sources import ENTITIES, REGISTRIES


def test_status_of_a_stopped_warehouse_exits_non_zero(nothing_running: Path, capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    assert main(["warehouse", "status"]) == 1
    out = capsys.readouterr().out
    assert [line.split()[:3] for line in out.splitlines()[1:3]] == [["dc1", "127.0.0.1:1031", "down"],
                                                                    ["dc2", "127.0.0.1:1033", "down"]]
    assert "no node's Patroni answers" in out and "UNHEALTHY" in out


@pytest.mark.parametrize(("argv", "message", "code"), [
    (["warehouse", "restore", "--to", "2026-11-30T21:00:00", "--into", "x"], "has no time zone", 2),
    (["warehouse", "restore", "--to", "yesterday", "--into", "x"], "give 'latest' or a time", 2),
    (["warehouse", "rejoin"], "kho warehouse up", 1),
])
def test_warehouse_commands_refuse_in_one_line(nothing_running: Path, capsys: pytest.CaptureFixture[str],
                                               argv: list[str], message: str, code: int) -> None:
    assert main(argv) == code  # 2: the command line is wrong; 1: it is right, and the warehouse is not there
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_sync_of_another_registrys_entity_is_a_usage_error_naming_the_known_ones(
        nothing_running: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "population", "births"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kho: error: unknown entity population.births; known entities: ")
    assert "civil_status.births" in err and "Traceback" not in err


def test_sync_of_an_entity_no_registry_has_is_argparses_usage_error(nothing_running: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["sync", "population", "unicorns"])
    assert stopped.value.code == 2
    assert "argument entity: invalid choice: 'unicorns'" in capsys.readouterr().err


def test_sync_without_a_warehouse_says_how_to_start_one(nothing_running: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KHO_REGISTRY_POPULATION_CLIENT_ID", "kho-prod")
    monkeypatch.setenv("KHO_REGISTRY_POPULATION_CLIENT_SECRET", "from-env")
    assert main(["sync", "population", "citizens"]) == 1
    err = capsys.readouterr().err
    assert "kho warehouse up" in err and "Traceback" not in err


def test_sync_without_registry_credentials_names_the_setting_and_generates_nothing(
        nothing_running: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "population", "citizens"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kho: error: registry population has no client credentials: set "
                          "KHO_REGISTRY_POPULATION_CLIENT_ID and KHO_REGISTRY_POPULATION_CLIENT_SECRET")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (nothing_running / "secrets").exists()


def test_a_bad_port_setting_is_a_config_error_not_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KHO_PG_PORT", "fifty")
    assert main(["warehouse", "status"]) == 1
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


# --- the command line itself: help, choices, exit codes -------------------------------------------------------------

def _parsers(parser: argparse.ArgumentParser, path: str = "kho") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the `kho` tree, with the command that reaches it."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _parsers(child, f"{path} {name}")
    return found


FIXED_SETS = {"registry", "entity", "format", "type"}
"""Arguments whose values are a fixed set: argparse must know it (help shows it, a typo is refused at once)."""


def test_every_argument_and_command_has_help_and_fixed_sets_have_choices() -> None:
    missing, unchosen = [], []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {name}")
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {choice.dest}" for choice in action._choices_actions if not choice.help]
            if action.dest in FIXED_SETS and not action.choices:
                unchosen.append(f"{path} {name}")
    assert not missing, f"arguments without help: {missing}"
    assert not unchosen, f"fixed sets without choices: {unchosen}"
    assert len(_parsers(build_parser())) > 30  # the walk reached the actions, not only the top


def test_entity_choices_are_the_catalogues(capsys: pytest.CaptureFixture[str]) -> None:
    sync = dict(_parsers(build_parser()))["kho sync"]
    (registry,) = [a for a in sync._actions if a.dest == "registry"]
    (entity,) = [a for a in sync._actions if a.dest == "entity"]
    assert list(registry.choices or ()) == [r.slug for r in REGISTRIES]
    assert set(entity.choices or ()) == {e.name for e in ENTITIES}
    assert all(e.name in (entity.help or "") for e in ENTITIES)


@pytest.mark.parametrize(("argv", "listed"), [
    ([], ["warehouse", "simulate", "sync", "load", "build", "status", "demo", "exit status"]),
    (["warehouse"], ["up", "down", "status", "switchover", "restore", "verify-restore"]),
    (["simulate"], ["serve", "export", "stats"]),
    (["quality"], ["validate", "prune"]),
    (["access"], ["apply", "check", "credentials", "audit"]),
])
def test_a_command_without_its_action_prints_the_full_help(nothing_running: Path, capsys: pytest.CaptureFixture[str],
                                                          argv: list[str], listed: list[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: kho{' ' + argv[0] if argv else ''} ")
    assert "required" not in err
    assert all(word in err for word in listed), err


def test_kho_alone_prints_help_as_its_own_process(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "kho.cli"], env={**os.environ, "KHO_HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "commands:" in done.stderr and "demo" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "logs").exists(), "help writes no log file"


def test_warehouse_down_says_stopped_not_unhealthy(nothing_running: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["warehouse", "down"]) == 0
    out = capsys.readouterr().out
    assert [line.split() for line in out.splitlines()[:2]] == [["dc1", "127.0.0.1:1031", "stopped"],
                                                              ["dc2", "127.0.0.1:1033", "stopped"]]
    assert "stopped" in out.splitlines()[-1]
    assert "UNHEALTHY" not in out and "down" not in out.split()
