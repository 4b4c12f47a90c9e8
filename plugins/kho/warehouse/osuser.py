"""The unprivileged OS user that runs the warehouse's servers (PostgreSQL, Patroni, etcd, pgBackRest).

initdb and postgres refuse to run as root, and sessions and CI run as root: kho then runs every server program as
`KHO_PG_OS_USER` (created as a system user if missing), switching with runuser, setpriv or su. Run as anyone else,
kho runs them as itself.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from kho.config import KhoConfig
from kho.errors import ConfigError, WarehouseError

log = logging.getLogger(__name__)

_children: list[subprocess.Popen[bytes]] = []
CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ServerUser:
    """Who runs the server programs: the current user, or `config.pg_os_user` when kho runs as root.

    initdb and postgres refuse to run as root, and sessions and CI run as root.
    """

    name: str
    uid: int
    gid: int
    switch: Literal["none", "runuser", "setpriv", "su"]
    tool: str = ""
    """Absolute path of the runuser/setpriv/su program, when `switch` is not "none"."""

    @property
    def is_other(self) -> bool:
        return self.switch != "none"

    def argv(self, args: Sequence[str]) -> list[str]:
        if self.switch == "runuser":
            return [self.tool, "-u", self.name, "--", *args]
        if self.switch == "setpriv":
            return [self.tool, f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *args]
        if self.switch == "su":
            return [self.tool, "-s", "/bin/sh", self.name, "-c", "exec " + shlex.join(args)]
        return list(args)

    def run(self, args: Sequence[str], *, cwd: Path, timeout: float, password: str | None = None,
            env: Mapping[str, str] | None = None) -> str:
        """Run one server program as this user; a password goes through PGPASSWORD, never argv."""
        env = {"PATH": CHILD_PATH, "LC_ALL": "C", **(env or {})}
        if password is not None:
            env["PGPASSWORD"] = password
        program = Path(args[0]).name
        try:
            done = subprocess.run(self.argv(args), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise WarehouseError(f"{program} did not finish within {timeout:.0f}s") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()[-2000:]
            raise WarehouseError(f"{program} failed (exit {done.returncode}) as user {self.name}: {detail}")
        return done.stdout

    def spawn(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], output: IO[bytes]) -> int:
        """Start a long-running server as this user, detached from kho (its own session, so it outlives the
        command and a Ctrl-C of it); returns its PID. setpriv and "none" exec in place, so the PID is the
        server's own and signals reach it."""
        process = subprocess.Popen(self.argv(args), cwd=cwd, env={"PATH": CHILD_PATH, "LC_ALL": "C", **env},
                                   stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        _children.append(process)  # kept, so it is reaped when it exits and never warns as an unwaited Popen
        return process.pid

    def chown(self, path: Path) -> None:
        if self.is_other:
            os.chown(path, self.uid, self.gid)

    def can_search(self, directory: Path) -> bool:
        st = directory.stat()
        if st.st_uid == self.uid:
            return bool(st.st_mode & stat.S_IXUSR)
        if st.st_gid in os.getgrouplist(self.name, self.gid):
            return bool(st.st_mode & stat.S_IXGRP)
        return bool(st.st_mode & stat.S_IXOTH)


def server_user(config: KhoConfig, *, create: bool) -> ServerUser | None:
    """The user that owns the data directories; None when running as root and that user does not exist yet."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return ServerUser(me.pw_name, me.pw_uid, me.pw_gid, "none")
    name = config.pg_os_user
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if not create:
            return None
        _create_system_user(name)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise ConfigError(f"KHO_PG_OS_USER={name} is root; PostgreSQL refuses to run as root, use e.g. 'postgres'")
    for switch in ("setpriv", "runuser", "su"):  # setpriv execs in place: a spawned server keeps its PID
        tool = shutil.which(switch, path=CHILD_PATH)
        if tool:
            return ServerUser(name, entry.pw_uid, entry.pw_gid, switch, tool)
    raise WarehouseError(f"cannot run PostgreSQL as {name!r}: none of runuser, setpriv or su is installed")


def _create_system_user(name: str) -> None:
    useradd = shutil.which("useradd", path=CHILD_PATH)
    if useradd is None:
        raise WarehouseError(f"OS user {name!r} does not exist and useradd is missing: create it, or set "
                             "KHO_PG_OS_USER to an existing unprivileged user")
    done = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise WarehouseError(f"could not create OS user {name!r} ({done.stderr.strip()}); create it by hand, or set "
                             "KHO_PG_OS_USER to an existing unprivileged user")
    log.warning("created system user %r to run PostgreSQL (it refuses to run as root)", name)


def grant_search(path: Path, user: ServerUser) -> None:
    """Let the server user reach `path` through ancestors it cannot enter (e.g. a root-only `mktemp -d`).

    Only search (o+x) is granted, never read, so names in those directories stay private.
    """
    if not user.is_other:
        return
    granted: list[str] = []
    for directory in reversed(path.parents):
        if user.can_search(directory):
            continue
        mode = directory.stat().st_mode
        directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        if not user.can_search(directory):
            raise WarehouseError(f"{user.name} cannot enter {directory} (owner/group lacks x); fix its permissions")
        granted.append(str(directory))
    if granted:
        log.warning("granted search-only permission (o+x) on %s so PostgreSQL running as %r can reach %s",
                    ", ".join(granted), user.name, path)



def write_owned(path: Path, text: str, user: ServerUser, mode: int = 0o600) -> None:
    """Write atomically and hand the file to the server user (kho may be root, the server never is)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    user.chown(tmp)
    os.replace(tmp, path)


def owned_dir(path: Path, user: ServerUser, mode: int = 0o700) -> Path:
    """A directory the server user owns (made if missing), reachable by it through its ancestors."""
    path.mkdir(parents=True, exist_ok=True)
    user.chown(path)
    path.chmod(mode)
    grant_search(path, user)
    return path
