"""Registry client credentials come from the environment or a generated file outside the repository."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from kho.config import KhoConfig, RegistryCredentials
from kho.errors import ConfigError


def config(tmp_path: Path, **env: str) -> KhoConfig:
    return KhoConfig.from_env({"KHO_HOME": str(tmp_path), **env})


def test_credentials_from_the_environment_win(tmp_path: Path) -> None:
    cfg = config(tmp_path, KHO_REGISTRY_CLIENT_ID="kho-prod", KHO_REGISTRY_CLIENT_SECRET="from-env")
    assert cfg.ensure_registry_credentials() == RegistryCredentials("kho-prod", "from-env")
    assert not cfg.registry_credentials_file.exists()
    assert cfg.child_env()["KHO_REGISTRY_CLIENT_SECRET"] == "from-env"


def test_a_credentials_file_is_generated_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first = cfg.ensure_registry_credentials()
    path = cfg.registry_credentials_file
    assert path == tmp_path / "secrets" / "registry_client.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"client_id": first.client_id, "client_secret": first.client_secret}
    assert config(tmp_path).ensure_registry_credentials() == first == config(tmp_path).registry_credentials()
    assert len(first.client_secret) >= 32
    assert "KHO_REGISTRY_CLIENT_SECRET" not in cfg.child_env()


def test_the_secret_never_appears_in_a_repr(tmp_path: Path) -> None:
    cfg = config(tmp_path, KHO_REGISTRY_CLIENT_ID="kho-prod", KHO_REGISTRY_CLIENT_SECRET="hush")
    assert "hush" not in repr(cfg) and "hush" not in repr(cfg.registry_credentials())


def test_half_the_credentials_in_the_environment_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both KHO_REGISTRY_CLIENT_ID and KHO_REGISTRY_CLIENT_SECRET"):
        config(tmp_path, KHO_REGISTRY_CLIENT_ID="kho-prod").ensure_registry_credentials()


def test_missing_credentials_say_how_to_get_some(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KHO_REGISTRY_CLIENT_ID"):
        config(tmp_path).registry_credentials()


def test_a_damaged_credentials_file_says_what_to_do(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.registry_credentials_file.parent.mkdir(parents=True)
    cfg.registry_credentials_file.write_text('{"client_id": 1}')
    with pytest.raises(ConfigError, match="client_secret"):
        cfg.registry_credentials()
