"""Which PostgreSQL server programs run the warehouse: the system's install first, else the `pgserver` wheel's."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kho.errors import WarehouseError

BinarySource = Literal["system", "pgserver"]
JSONLOG_SINCE = 15
"""The first PostgreSQL major with `log_destination = jsonlog`, the form kho.warehouse.audit reads."""
REQUIRED_PROGRAMS = ("initdb", "pg_ctl", "pg_basebackup", "pg_rewind", "postgres")


@dataclass(frozen=True)
class PgBinaries:
    """One PostgreSQL installation's programs; every node of a cluster must run the same major version."""

    bindir: Path
    source: BinarySource
    major: int

    def program(self, name: str) -> str:
        return str(self.bindir / name)

    @property
    def pkglibdir(self) -> Path:
        """Where this installation's loadable modules live (Debian: /usr/lib/postgresql/N/lib)."""
        return _pkglibdir(self.bindir)

    @property
    def has_pgaudit(self) -> bool:
        """Whether pgaudit is installed for these binaries (Debian's postgresql-N-pgaudit), so kho can load it."""
        return (self.pkglibdir / "pgaudit.so").is_file()


def find_binaries(source: Literal["auto", "system", "pgserver"] = "auto", *, major: int | None = None) -> PgBinaries:
    """The PostgreSQL server programs to run: the system's install first, else the `pgserver` wheel's.

    `major` restricts the choice to one version, so an existing data directory is always run by the version that
    created it (a pgserver-built PG 16 cluster keeps working on a machine whose system PostgreSQL is 15).
    """
    looked: list[str] = []
    for bindir, origin in _candidate_bindirs(source):
        missing = [p for p in REQUIRED_PROGRAMS if not os.access(bindir / p, os.X_OK)]
        if missing:
            looked.append(f"{bindir} ({origin}: lacks {', '.join(missing)})")
            continue
        found = _binary_major(bindir)
        if major is not None and found != major:
            looked.append(f"{bindir} ({origin}: PostgreSQL {found}, need {major})")
            continue
        return PgBinaries(bindir=bindir, source=origin, major=found)
    wanted = f"PostgreSQL {major} " if major is not None else "PostgreSQL "
    raise WarehouseError(
        f"no {wanted}server binaries found (source={source}; looked at: {'; '.join(looked) or 'nothing'}). "
        "Install them (`apt-get install postgresql`) or the pgserver wheel (`uv sync`)."
    )


def _candidate_bindirs(source: str) -> Iterator[tuple[Path, BinarySource]]:
    seen: set[Path] = set()
    candidates: list[tuple[Path, BinarySource]] = []
    if source in ("auto", "system"):
        candidates += [(d, "system") for d in _system_bindirs()]
    if source in ("auto", "pgserver"):
        spec = importlib.util.find_spec("pgserver")  # finds the wheel without importing it (import has side effects)
        if spec is not None and spec.submodule_search_locations:
            candidates.append((Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin", "pgserver"))
    for bindir, origin in candidates:
        resolved = bindir.resolve()
        if resolved not in seen and resolved.is_dir():
            seen.add(resolved)
            yield resolved, origin


def _system_bindirs() -> list[Path]:
    dirs: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            dirs.append(Path(out.stdout.strip()))
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )
    return dirs + versions


@functools.lru_cache(maxsize=16)
def _binary_major(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10)
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out.stdout)
    if out.returncode != 0 or not match:
        raise WarehouseError(f"{bindir}/postgres --version failed: {(out.stderr or out.stdout).strip()}")
    return int(match.group(1))


@functools.lru_cache(maxsize=16)
def _pkglibdir(bindir: Path) -> Path:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(bindir / "pg_config"), "--pkglibdir"], capture_output=True, text=True, timeout=10,
                             check=True)
        if out.stdout.strip():
            return Path(out.stdout.strip())
    for candidate in (bindir.parent / "lib" / "postgresql", bindir.parent / "lib"):
        if (candidate / "plpgsql.so").is_file():
            return candidate
    return bindir.parent / "lib"


def data_major(datadir: Path) -> int | None:
    try:
        return int((datadir / "PG_VERSION").read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError):
        return None
