"""pgBackRest as kho runs it: one configuration per warehouse node, one for backups, one for restores.

Each node's PostgreSQL archives its WAL with `archive-push` through a configuration of its own (its data directory,
its socket, its own lock and spool directories), as it would on a host of its own in the compose deployment. Backups
run from the node that is the primary now, through `backup.conf`, rewritten before each run to point at it. Restores
read the repository through `restore.conf`, which carries no node and no asynchronous archiving, so a restored
cluster's `archive-get` never shares a spool queue with a live node.

Every pgBackRest command runs as the server user (kho.warehouse.osuser), which owns the repository.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kho.config import KhoConfig
from kho.errors import WarehouseError
from kho.warehouse.layout import Layout, Member, layout
from kho.warehouse.osuser import CHILD_PATH, ServerUser, owned_dir, server_user, write_owned

COMPRESS_TYPE = "zst"
"""zst (level 3) over lz4, measured by bench/backup.py on a 1,000,000-citizen warehouse (3.0 GB, 2 cores): the
repository 32% smaller (693 vs 1021 MB per full backup) for a backup 3 s slower (229 vs 290 MB/s), and restores no
slower (361 vs 197 MB/s, lz4 measured first). What is kept for weeks matters more than seconds a night."""
PROCESS_MAX = max(1, min(4, os.cpu_count() or 1))
"""Parallel compress/transfer processes for backup and restore (pgBackRest's default is 1)."""
ARCHIVE_PUSH_TIMEOUT_S = 60
"""How long a node's archive_command may take before PostgreSQL retries it."""
LONG_TIMEOUT_S = 6 * 3600.0
"""A backup or restore of a large warehouse takes what it takes; this only stops a hung one."""


@dataclass(frozen=True)
class Unit:
    """A pgBackRest configuration and its private directories (lock, spool, log)."""

    name: str
    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "pgbackrest.conf"

    @property
    def lock(self) -> Path:
        return self.directory / "lock"

    @property
    def spool(self) -> Path:
        return self.directory / "spool"

    @property
    def log(self) -> Path:
        return self.directory / "log"


def base_dir(lay: Layout) -> Path:
    return lay.root / "pgbackrest"


def unit(config: KhoConfig, name: str) -> Unit:
    """`name` is a node's (dc1, dc2, ...), or "backup", or "restore"."""
    return Unit(name, base_dir(layout(config)) / name)


def executable() -> str:
    """The pgbackrest program, by absolute path: archive_command runs with whatever PATH PostgreSQL was given."""
    found = shutil.which("pgbackrest", path=CHILD_PATH) or shutil.which("pgbackrest")
    if found is None:
        raise WarehouseError("pgbackrest is not installed: as root run `apt-get install pgbackrest` "
                             "(`make setup` does it where apt can)")
    return found


def require_user(config: KhoConfig) -> ServerUser:
    user = server_user(config, create=False)
    if user is None:
        raise WarehouseError(f"the server user {config.pg_os_user!r} does not exist yet: run `kho warehouse up`")
    return user


def _global(config: KhoConfig, u: Unit, *, asynchronous: bool) -> list[str]:
    lines = [
        "[global]",
        f"repo1-path={config.ha.backup_repo}",
        f"repo1-retention-full={config.ha.backup_retention_full}",
        f"compress-type={COMPRESS_TYPE}",
        f"process-max={PROCESS_MAX}",
        "start-fast=y",
        f"lock-path={u.lock}",
        f"log-path={u.log}",
        "log-level-console=warn",
        "log-level-file=info",
    ]
    if asynchronous:
        # archive-push returns once the segment is in the spool queue's hands; a busy primary's WAL is pushed in
        # parallel batches rather than one process start per 16 MB segment.
        lines += ["archive-async=y", f"spool-path={u.spool}", "archive-get-queue-max=256MiB"]
    return lines


def _stanza(config: KhoConfig, member: Member) -> list[str]:
    return [
        f"[{config.ha.scope}]",
        f"pg1-path={member.datadir}",
        f"pg1-port={member.port}",
        f"pg1-socket-path={member.socket_dir}",
        f"pg1-user={config.warehouse.admin_user}",
    ]


def _write(config: KhoConfig, user: ServerUser, u: Unit, lines: Sequence[str]) -> None:
    owned_dir(u.directory, user)
    for sub in (u.lock, u.log, u.spool):
        owned_dir(sub, user)
    write_owned(u.config, "\n".join(lines) + "\n", user)


def write_configs(config: KhoConfig, user: ServerUser, leader: Member | None = None) -> None:
    """Every node's configuration, the backup configuration (pg1 = `leader`, default the first node) and the
    restore configuration; the repository is made, owned by the server user."""
    lay = layout(config)
    owned_dir(base_dir(lay), user)
    repo = config.ha.backup_repo
    repo.parent.mkdir(parents=True, exist_ok=True)
    owned_dir(repo, user, mode=0o750)
    for member in lay.members:
        u = unit(config, member.name)
        _write(config, user, u, [*_global(config, u, asynchronous=True), "", *_stanza(config, member)])
    u = unit(config, "backup")
    _write(config, user, u, [*_global(config, u, asynchronous=False), "", *_stanza(config, leader or lay.members[0])])
    write_restore_config(config, user)


def write_restore_config(config: KhoConfig, user: ServerUser) -> Unit:
    """The configuration restores and `info` read the repository through: no node, no asynchronous archiving."""
    owned_dir(base_dir(layout(config)), user)
    u = unit(config, "restore")
    _write(config, user, u, [*_global(config, u, asynchronous=False), "", f"[{config.ha.scope}]"])
    return u


def postgres_parameters(config: KhoConfig, member: Member) -> dict[str, str]:
    """The PostgreSQL settings a node needs for continuous archiving into the repository (plain values; Patroni
    quotes them). `restore_command` lets a replica that fell behind its primary's retained WAL catch up from the
    archive; Patroni moves it to the recovery settings and applies it only while the node is a replica."""
    return archive_parameters(executable(), unit(config, member.name).config, config.ha.scope)


def archive_parameters(program: str, config_file: Path | str, stanza: str) -> dict[str, str]:
    """archive_command (archive-push) and restore_command (archive-get) through one pgBackRest configuration: an
    embedded node's own, or a container image's (kho.warehouse.compose)."""
    common = [program, f"--config={config_file}", f"--stanza={stanza}"]
    return {
        "archive_mode": "on",
        "archive_command": shlex.join([*common, "archive-push"]) + " %p",
        "archive_timeout": "300s",
        "restore_command": shlex.join([*common, "archive-get"]) + ' %f "%p"',
    }


@dataclass(frozen=True)
class Outcome:
    stdout: str
    stderr: str


_MESSAGE = re.compile(r"(?:ERROR|WARN): (?:\[\d+\]: )?(.*)")


def run(config: KhoConfig, user: ServerUser, u: Unit, command: str, *options: str,
        timeout: float = LONG_TIMEOUT_S, console: str = "warn") -> Outcome:
    """One pgBackRest command as the server user; a failure is one line with pgBackRest's own error."""
    argv = [executable(), f"--config={u.config}", f"--stanza={config.ha.scope}", f"--log-level-console={console}",
            *options, command]
    try:
        done = subprocess.run(user.argv(argv), cwd=u.directory, env={"PATH": CHILD_PATH, "LC_ALL": "C"},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WarehouseError(f"pgbackrest {command} did not finish within {timeout:.0f}s "
                             f"(its log: {u.log})") from exc
    if done.returncode != 0:
        raise WarehouseError(f"pgbackrest {command} failed (exit {done.returncode}): "
                             f"{first_error(done.stderr + done.stdout)} (log: {u.log})")
    return Outcome(done.stdout, done.stderr)


def first_error(output: str) -> str:
    """pgBackRest's ERROR line (its most specific message), else the last line it printed, on one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        match = _MESSAGE.search(line)
        if match and "ERROR" in line:
            return match.group(1)
    return lines[-1] if lines else "no output"


def info(config: KhoConfig, user: ServerUser) -> dict[str, Any]:
    """The stanza's entry of `pgbackrest info` (backups oldest first, archive ranges, status)."""
    out = run(config, user, unit(config, "restore"), "info", "--output=json", timeout=120)
    try:
        stanzas = json.loads(out.stdout)
    except json.JSONDecodeError as exc:
        raise WarehouseError(f"pgbackrest info printed no JSON: {out.stdout[:200]!r}") from exc
    for stanza in stanzas:
        if stanza.get("name") == config.ha.scope:
            return dict(stanza)
    return {"name": config.ha.scope, "backup": [], "archive": [], "status": {"code": 1, "message": "missing"}}


def stanza_create(config: KhoConfig, user: ServerUser) -> None:
    """Idempotent: on an existing stanza of this cluster pgBackRest says so and succeeds."""
    run(config, user, unit(config, "backup"), "stanza-create", timeout=300)


def check(config: KhoConfig, user: ServerUser) -> None:
    """pgBackRest's own end-to-end test: the primary is reachable and a forced WAL switch reaches the repository."""
    run(config, user, unit(config, "backup"), "check", timeout=300)


def install() -> str:
    """Install Debian's pgbackrest where it is missing and this is root on apt; one line saying what happened."""
    found = shutil.which("pgbackrest", path=CHILD_PATH)
    if found:
        return f"pgbackrest: installed ({found})"
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return "pgbackrest: not installed; as root run `apt-get install pgbackrest` (backups need it)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "pgbackrest"]):
        done = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"pgbackrest: `{' '.join(args[1:])}` failed ({last[0][:160]}); backups need it"
    return "pgbackrest: installed"
