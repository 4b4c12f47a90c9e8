"""Run dbt in-process (dbtRunner) against the warehouse, the way Cosmos does inside Airflow; and keep the dbt
manifest that build_warehouse renders its tasks from.

dbt reads its connection from the environment (dbt_project/profiles.yml uses env_var), so a run sets the variables
for the duration of the call and restores them after. Its target and log folders live under KHO_HOME, never in the
repository.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kho.config import PROJECT_ROOT, KhoConfig
from kho.errors import KhoError

DBT_PROJECT = PROJECT_ROOT / "dbt_project"
PROFILE = "kho"
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
BUILD_SESSION_SETTINGS: dict[str, str] = {"work_mem": "256MB", "jit": "off"}
"""Server settings for the build's sessions (libpq's PGOPTIONS), measured with bench/build.py: the models join and
aggregate millions of rows, which spill to disk in the default 4 MB of work_mem; and JIT compiles their large
expressions for longer than it saves (JIT off cut the golden record's incremental build by a third)."""


def build_session_options() -> str:
    return " ".join(f"-c {name}={value}" for name, value in BUILD_SESSION_SETTINGS.items())


class BuildError(KhoError):
    """dbt could not build or a blocking dbt test failed: nothing was published."""


class ManifestMissing(KhoError):
    """No dbt manifest for the dbt project as it is now: build_warehouse cannot render its tasks."""


@dataclass(frozen=True)
class NodeOutcome:
    """One dbt node's result: a model, seed or snapshot built, a test passed or failed."""

    unique_id: str
    resource_type: str
    name: str
    status: str
    message: str

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass(frozen=True)
class DbtOutcome:
    command: tuple[str, ...]
    success: bool
    nodes: tuple[NodeOutcome, ...]
    error: str = ""
    """What dbt raised when it could not even run (a parsing or compilation error of the project)."""

    @property
    def failures(self) -> tuple[NodeOutcome, ...]:
        return tuple(n for n in self.nodes if n.failed)

    def raise_for_failure(self) -> None:
        """Fail naming every failing model and test, and what dbt said about each."""
        if self.success:
            return
        failed = self.failures
        listed = "; ".join(f"{n.resource_type} {n.name} ({n.status}){': ' + n.message if n.message else ''}"
                           for n in failed) or self.error or "see the dbt log"
        raise BuildError(f"dbt {' '.join(self.command[:1])} failed ({len(failed)} failing): {listed}")


def target_dir(config: KhoConfig) -> Path:
    """dbt's target folder (manifest, compiled SQL, docs) under KHO_HOME."""
    return config.home / "dbt" / "target"


def dbt_environment(config: KhoConfig, host: str, port: int) -> dict[str, str]:
    """What profiles.yml reads: the node to write to and the warehouse login (the password from its file)."""
    wh = config.warehouse
    return {
        "KHO_DBT_HOST": host,
        "KHO_DBT_PORT": str(port),
        "KHO_PG_USER": wh.user,
        "KHO_PG_PASSWORD": wh.password(),
        "KHO_PG_DATABASE": wh.dbname,
        "PGOPTIONS": build_session_options(),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }


BUILD_AS_OF = "KHO_BUILD_AS_OF"
BUILD_RUN_ID = "KHO_BUILD_RUN_ID"


def build_environment(as_of: str | None, run_id: str | None) -> dict[str, str]:
    """What one build tells the dbt project (macros/kho_build.sql): the as-of date and the run that builds.

    Environment variables, not --vars: dbt re-parses the whole project whenever --vars change (every night, as the
    date changes), but only what reads an environment variable when that changes (0.4 s instead of 1-2 s).
    """
    values = {}
    if as_of:
        values[BUILD_AS_OF] = as_of
    if run_id:
        values[BUILD_RUN_ID] = run_id
    return values


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_dbt(config: KhoConfig, command: Sequence[str], *, host: str, port: int,
            environment: Mapping[str, str] | None = None, target: Path | None = None) -> DbtOutcome:
    """`dbt <command>` against the node at host:port; returns every node's outcome (never raises for a failing
    test: call `raise_for_failure`). `target` replaces dbt's target folder (KHO_HOME/dbt/target)."""
    from dbt.cli.main import dbtRunner

    target = target or target_dir(config)
    args = [
        *command,
        "--project-dir", str(DBT_PROJECT),
        "--profiles-dir", str(DBT_PROJECT),
        "--target-path", str(target),
        "--log-path", str(target_dir(config).parent / "logs"),
    ]
    with _environment({BUILD_AS_OF: "", BUILD_RUN_ID: "", **dbt_environment(config, host, port),
                       **(environment or {})}):
        result = dbtRunner().invoke(args)
    error = " ".join(str(result.exception).split()) if result.exception else ""
    return DbtOutcome(tuple(command), bool(result.success), _nodes(result.result), error)


def _nodes(result: Any) -> tuple[NodeOutcome, ...]:
    outcomes = []
    for item in getattr(result, "results", None) or ():
        node = getattr(item, "node", None)
        if node is None:
            continue
        outcomes.append(NodeOutcome(
            unique_id=str(node.unique_id),
            resource_type=str(node.resource_type),
            name=str(node.name),
            status=str(getattr(item.status, "value", item.status)),
            message=str(item.message or ""),
        ))
    return tuple(outcomes)


MANIFEST_COMMAND = "kho manifest"
PROJECT_OUTPUTS = frozenset({"target", "logs", "dbt_packages"})
"""What dbt writes into a project folder: not part of the project the manifest describes."""


def project_fingerprint(project: Path = DBT_PROJECT) -> str:
    """A hash of every file of the dbt project (name and bytes; dbt's own outputs and hidden files left out): the
    manifest of one fingerprint describes exactly that project. About 2 ms, cheap enough for every DAG parse."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (folder == str(project) and
                                                                         d in PROJECT_OUTPUTS))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(folder, name)
            body = path.read_bytes()
            digest.update(f"{path.relative_to(project).as_posix()}\0{len(body)}\0".encode())
            digest.update(body)
    return digest.hexdigest()[:20]


def manifest_dir(config: KhoConfig) -> Path:
    return config.home / "dbt" / "manifest"


def manifest_path(config: KhoConfig, project: Path = DBT_PROJECT) -> Path:
    """Where the manifest of the project as it is now lives: `$KHO_HOME/dbt/manifest/<fingerprint>/manifest.json`,
    so a changed project never finds an old manifest."""
    return manifest_dir(config) / project_fingerprint(project) / "manifest.json"


def dag_manifest(config: KhoConfig, project: Path = DBT_PROJECT) -> Path:
    """The manifest build_warehouse renders from; refused in one line, naming the command, if there is none for the
    project as it is now (never written, or the project changed since): rendering an old graph would leave a new
    model unbuilt without a word, and `dbt ls` at every parse costs seconds."""
    path = manifest_path(config, project)
    if path.is_file():
        return path
    others = manifest_dir(config).glob("*/manifest.json")
    why = "the dbt project changed since the last one was written" if any(others) else "none was written yet"
    raise ManifestMissing(f"no dbt manifest for {project} as it is now ({why}; expected {path}): run "
                          f"`{MANIFEST_COMMAND}` with the same KHO_HOME")


def write_manifest(config: KhoConfig, project: Path = DBT_PROJECT) -> Path:
    """`dbt parse` the project (no warehouse needed) in a child process, so the caller never imports dbt, and move
    the manifest into place in one rename; manifests of older versions of the project are removed."""
    fingerprint = project_fingerprint(project)
    final = manifest_dir(config) / fingerprint / "manifest.json"
    manifest_dir(config).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".parse-", dir=manifest_dir(config)) as scratch:
        _dbt_parse(project, Path(scratch))
        final.parent.mkdir(exist_ok=True)
        os.replace(Path(scratch) / "manifest.json", final)
    for old in manifest_dir(config).iterdir():
        if old.name != fingerprint and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return final


def ensure_manifest(config: KhoConfig, project: Path = DBT_PROJECT) -> tuple[Path, bool]:
    """The manifest of the project as it is now, written first if missing; and whether it had to be written."""
    try:
        return dag_manifest(config, project), False
    except ManifestMissing:
        return write_manifest(config, project), True


def _dbt_parse(project: Path, target: Path) -> None:
    # Parsing reads no secret and reaches no server: the profile's defaults render without the warehouse's settings.
    env = {k: v for k, v in os.environ.items() if k != "KHO_PG_PASSWORD"}
    env.update(DBT_SEND_ANONYMOUS_USAGE_STATS="False", DO_NOT_TRACK="1")
    command = [sys.executable, "-m", "dbt.cli.main", "--quiet", "--no-use-colors", "parse", "--project-dir",
               str(project), "--profiles-dir", str(project), "--target-path", str(target),
               "--log-path", str(target / "logs")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not (target / "manifest.json").is_file():
        said = " ".join((done.stdout + done.stderr).split())[-600:] or f"exit status {done.returncode}"
        raise BuildError(f"dbt parse of {project} failed: {said}")
