"""The warehouse's three logins in the configuration: distinct roles, passwords from the environment or files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kho.config import KhoConfig
from kho.errors import ConfigError


def test_the_application_administrator_and_replication_roles_must_differ(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="three different roles"):
        KhoConfig.from_env({"KHO_HOME": str(tmp_path), "KHO_PG_ADMIN_USER": "kho"})


def test_the_administrator_password_is_generated_once_into_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    wh = KhoConfig.from_env({"KHO_HOME": str(tmp_path)}).warehouse

    first = wh.ensure_admin_password()

    path = tmp_path / "secrets" / "pg_admin_password"
    assert wh.admin_password_path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert wh.ensure_admin_password() == wh.admin_password() == first
    assert first not in {wh.ensure_password(), wh.ensure_replication_password()}


def test_the_administrator_password_from_the_environment_wins_and_never_reaches_children(tmp_path: Path) -> None:
    config = KhoConfig.from_env({"KHO_HOME": str(tmp_path), "KHO_PG_ADMIN_PASSWORD": "from-env",
                                 "KHO_PG_ADMIN_USER": "dba"})

    assert (config.warehouse.admin_user, config.warehouse.admin_password()) == ("dba", "from-env")
    env = config.child_env()
    assert env["KHO_PG_ADMIN_USER"] == "dba"
    assert "from-env" not in env.values()


def test_a_missing_administrator_password_says_how_to_get_one(tmp_path: Path) -> None:
    wh = KhoConfig.from_env({"KHO_HOME": str(tmp_path)}).warehouse

    with pytest.raises(ConfigError, match=r"KHO_PG_ADMIN_PASSWORD.*kho warehouse up"):
        wh.admin_password()
