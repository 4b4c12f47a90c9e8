"""Everything derived from `kho.sources`, by one command: `kho generate` writes it, `kho generate --check` (CI, in
`make lint`) fails when a committed file differs from what the registries give.

Each generated file is an `Artifact`: its path under the project root and a function giving its bytes. The
renderers stay with the stage that owns their output (raw GX suites in `kho.quality.suites`, dbt sources, staging
and seeds in `kho.build.project`, the entity reference in `kho.simulator.docs`, the NFC table in
`kho.sources._nfc_gen`, the compose deployment's Patroni configuration in `kho.warehouse.compose`, from the
embedded nodes' settings); this module only lists them, compares and writes. `--out DIR` generates into another root,
so a registry named in `KHO_REGISTRY_MODULES` gets its files without touching the repository.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from kho.build import project
from kho.build.publish import BUILD_PREFIX
from kho.config import PROJECT_ROOT
from kho.errors import ConfigError
from kho.quality import project as gx_project
from kho.quality import suites
from kho.simulator import docs
from kho.sources import REGISTRIES, Entity, Registry
from kho.sources import _nfc_gen as nfc_gen
from kho.warehouse import compose

Render = Callable[[bytes | None], bytes]
"""The file's content, given what is there now (None if nothing): a doc with a generated section keeps the rest."""
State = Literal["missing", "differs", "orphan"]

EXPECTATIONS = Path("expectations")
DBT_PROJECT = Path("dbt_project")
STAGING = DBT_PROJECT / "models" / "staging"
NFC_TABLE = Path("plugins", "kho", "sources", "_nfc_table.py")
REGISTRIES_DOC = Path("docs", "registries.md")
ORPHAN_PATTERNS: tuple[str, ...] = (
    f"{EXPECTATIONS}/{gx_project.SUITES}/{suites.RAW_SCHEMA}/*.json",
    f"{STAGING}/*/*.sql",
    f"{STAGING}/*/*.yml",
)
"""Where generated files live beside hand-written ones: a file here that carries a generated marker but that no
artifact produces is left from a removed entity or registry (an orphan)."""
GENERATED_MARKERS: tuple[bytes, ...] = (project.GENERATED.encode(), suites.GENERATED_NOTE.encode())
"""What every generated file of those places says; a file without one is hand-written and never an orphan."""
GENERATED_DIRS: tuple[str, ...] = (
    f"{EXPECTATIONS}/{gx_project.VALIDATION_DEFINITIONS}/*.json",
    f"{EXPECTATIONS}/{gx_project.CHECKPOINTS}/*.json",
)
"""Where every file is generated (GX's JSON has no room for a marker): any file no artifact produces is an orphan."""


@dataclass(frozen=True)
class Artifact:
    """One generated file: where it lives under the project root, and what it must hold."""

    path: Path
    render: Render
    source: str
    """What it is generated from, for people: `kho.sources population.citizens`."""


@dataclass(frozen=True)
class Stale:
    """A generated file that is not what the registries give: missing, different, or produced by nothing."""

    path: Path
    """Relative to the root."""
    state: State


def _whole(content: Callable[[], str | bytes]) -> Render:
    def render(_current: bytes | None) -> bytes:
        value = content()
        return value.encode() if isinstance(value, str) else value

    return render


def _raw_suite(entity: Entity) -> str:
    return suites.dump_suite(suites.raw_suite(entity))


def _registries_doc(registries: Sequence[Registry]) -> Render:
    def render(current: bytes | None) -> bytes:
        if current is None:  # a fresh root (`--out`): the hand-written part is the repository's
            current = (PROJECT_ROOT / REGISTRIES_DOC).read_bytes()
        try:
            return docs.updated(current.decode("utf-8"), registries).encode()
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{REGISTRIES_DOC}: {exc}") from None

    return render


def artifacts(registries: Sequence[Registry] = REGISTRIES) -> tuple[Artifact, ...]:
    """Every generated file of the project, for this catalogue of registries."""
    found = [Artifact(NFC_TABLE, _whole(nfc_gen.render_table), "Python's unicodedata")]
    for registry in registries:
        folder = STAGING / registry.slug
        found += [
            Artifact(folder / f"_{registry.slug}__sources.yml", _whole(partial(project.sources_yml, registry)),
                     f"kho.sources registry {registry.slug}"),
            Artifact(folder / f"_{registry.slug}__models.yml", _whole(partial(project.staging_yml, registry)),
                     f"kho.sources registry {registry.slug}"),
        ]
        for entity in registry.entities:
            found.append(Artifact(folder / f"{project.staging_model(entity)}.sql",
                                  _whole(partial(project.staging_sql, entity)),
                                  f"kho.sources {entity.qualified_name}"))
    for seed, content in project.seeds():
        found.append(Artifact(DBT_PROJECT / "seeds" / seed, _whole(partial(bytes, content)), "kho.sources.reference"))
    entities = [e for r in registries for e in r.entities]
    for entity in entities:
        name = suites.suite_name(suites.RAW_SCHEMA, entity.raw_table)
        found.append(Artifact(suites.suite_path(EXPECTATIONS, name),
                              _whole(partial(_raw_suite, entity)),
                              f"kho.sources {entity.qualified_name}"))
    found += _gx_project(entities)
    found.append(Artifact(REGISTRIES_DOC, _registries_doc(registries), "kho.sources (entity reference)"))
    found.append(Artifact(compose.TEMPLATE, _whole(compose.render), "kho.warehouse.patroni (compose template)"))
    return tuple(found)


def _gx_project(entities: Sequence[Entity]) -> list[Artifact]:
    """GX's declarations (kho.quality.project): the project file, and a validation definition and a checkpoint per
    raw table and per mart suite (the repository's mart suites, which are written by hand)."""
    targets = gx_project.targets(entities, gx_project.mart_suites(PROJECT_ROOT / EXPECTATIONS), BUILD_PREFIX)
    source = "kho.sources and the mart suites"
    found = [Artifact(EXPECTATIONS / gx_project.PROJECT_FILE, _whole(partial(gx_project.project_config, targets)),
                      source)]
    for t in targets:
        if t.layer == gx_project.MART_LAYER:
            found.append(Artifact(suites.suite_path(EXPECTATIONS, t.suite), partial(_mart_suite_id, t.suite),
                                  f"{t.suite} (its id)"))
        found.append(Artifact(EXPECTATIONS / gx_project.VALIDATION_DEFINITIONS / f"{t.suite}.json",
                              _whole(partial(gx_project.validation_definition, t)), t.suite))
        found.append(Artifact(EXPECTATIONS / gx_project.CHECKPOINTS / f"{t.suite}.json",
                              _whole(partial(gx_project.checkpoint, t)), t.suite))
    return found


def _mart_suite_id(suite: str, current: bytes | None) -> bytes:
    if current is None:  # a fresh root (`--out`): the mart suites are the repository's
        current = _read(PROJECT_ROOT / suites.suite_path(EXPECTATIONS, suite))
    try:
        return gx_project.with_suite_id(current, suite)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"mart suite {suite}: {exc}") from None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _plan(root: Path, generated: Iterable[Artifact]) -> list[tuple[Stale, bytes | None]]:
    """What differs under `root`, with the bytes each file should hold (None for an orphan to remove)."""
    plan: list[tuple[Stale, bytes | None]] = []
    paths: set[Path] = set()
    for artifact in generated:
        paths.add(artifact.path)
        current = _read(root / artifact.path)
        wanted = artifact.render(current)
        if current != wanted:
            plan.append((Stale(artifact.path, "missing" if current is None else "differs"), wanted))
    for pattern in ORPHAN_PATTERNS:
        for found in sorted(root.glob(pattern)):
            relative = found.relative_to(root)
            content = _read(found) or b""
            if relative not in paths and any(marker in content for marker in GENERATED_MARKERS):
                plan.append((Stale(relative, "orphan"), None))
    for pattern in GENERATED_DIRS:
        for found in sorted(root.glob(pattern)):
            relative = found.relative_to(root)
            if relative not in paths:
                plan.append((Stale(relative, "orphan"), None))
    return plan


def check(root: Path = PROJECT_ROOT, generated: Iterable[Artifact] | None = None) -> list[Stale]:
    """The generated files under `root` that differ from what the registries give; writes nothing."""
    plan = _plan(root, artifacts() if generated is None else generated)
    return [stale for stale, _ in plan]


def write(root: Path = PROJECT_ROOT, generated: Iterable[Artifact] | None = None) -> list[Stale]:
    """Bring every generated file under `root` up to date (orphans removed); return what changed."""
    plan = _plan(root, artifacts() if generated is None else generated)
    for stale, wanted in plan:
        target = root / stale.path
        try:
            if wanted is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(wanted)
        except OSError as exc:
            raise ConfigError(f"cannot write {target}: {exc.strerror}; give --out a directory you may write "
                              "into") from None
    return [stale for stale, _ in plan]
