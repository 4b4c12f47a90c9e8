"""Export files, as registries deliver bulk initial loads: CSV and JSON Lines, optionally gzipped, with a manifest.

Each (entity, day) goes to `<registry>__<entity>__day<NNN>.<csv|jsonl>[.gz]`: day 0 is the initial snapshot,
day d >= 1 that day's change feed. CSV is UTF-8 with a header row and writes dates as the registries' exports
do (`dd/mm/yyyy`, the entity's `export_date_format`); timestamps stay ISO 8601. JSON Lines keep the API's wire
form. `manifest.json` lists every file with its row count, size and SHA-256, and the world spec that made it.

Beside the files, `ground_truth.jsonl` (`.jsonl.gz` with gzip) lists every defect and cross-registry anomaly the
exported files carry, one JSON object per line, listed in `manifest.json` under `ground_truth` (rows, size,
SHA-256; `Manifest.verify` checks it like the others). Its fields (`truth_line`): those of `Defect.to_json`
(`registry`, `entity`, `key`, `kind`, `day`, `expected`), then `key_fields` (the contract's key fields, in `key`'s
order), `pending`, `file_day` and `files`. Non-pending: `files` names the exported files (one per format) of
`file_day`, the snapshot (0) or feed whose records hold the record as it carries the defect: the defect's own
`day`, except an anomaly in a record that day's events left unchanged (a dead participant's coverage left active),
filed where that record last arrived. Pending (`pending: true`, `file_day: null`, `files: []`): withheld from the
last exported day D's feed, a late-arriving version of D (or an anomaly its record carries), listed under
`day` D + 1, whose feed is the first that may carry it (if day D + 1 changes the row again, the newer version
supersedes it and it never arrives); kho cannot find it in this export. Order: by `day`, each day's defects in the
generator's order (entity by entity, then that day's anomalies), the pending last. Only the exported entities'
defects are listed, an anomaly under the entity the audit reports it under (`defects.ANOMALY_ENTITY`). Keys are
in wire form: a CSV file writes a date key field (`enterprise_status_changes.effective_on`) as `dd/mm/yyyy`.

Streaming, in bounded memory: records go to a JSON Lines spool on disk as they are generated (the CSV header
is the union of the fields the records carry, known only at the end, e.g. on a schema-drift day), then each
requested format is written from the spool in batches. Deterministic: the same spec gives byte-identical files
(gzip with mtime 0 and no file name in its header, no timestamps in the manifest).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip as gzip_module
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from kho.errors import ConfigError
from kho.sources.contract import Entity

ExportFormat = Literal["csv", "jsonl"]
ExportKind = Literal["snapshot", "changes"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl")
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2
"""2: the ground truth (`ground_truth`) beside the files; a version-1 manifest has none."""
GROUND_TRUTH_NAME = "ground_truth.jsonl"
BATCH_ROWS = 5000
"""Rows per write: large enough to amortise the per-write cost, small enough to keep memory flat."""
_COPY_BYTES = 1 << 20
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

Record = Mapping[str, str | None]
T = TypeVar("T")


class ExportSpec(Protocol):
    """The world spec an export is made from (`kho.simulator.world.WorldSpec`)."""

    @property
    def seed(self) -> int: ...

    @property
    def citizens(self) -> int: ...

    @property
    def days(self) -> int: ...

    @property
    def defect_rate(self) -> float: ...


class TruthDefect(Protocol):
    """One defect of the ground truth (`kho.simulator.defects.Defect`)."""

    @property
    def registry(self) -> str: ...

    @property
    def entity(self) -> str: ...

    @property
    def key(self) -> tuple[str, ...]: ...

    @property
    def kind(self) -> str: ...

    @property
    def day(self) -> int: ...

    @property
    def expected(self) -> str: ...


class LocatedDefect(Protocol):
    """A defect and the day of the file holding its record, None while pending (`generate.TruthEntry`)."""

    @property
    def defect(self) -> TruthDefect: ...

    @property
    def file_day(self) -> int | None: ...


class RecordStreams(Protocol):
    """Where an export's records and ground truth come from: the generator's streams, or a fake in tests."""

    def snapshot(self, spec: Any, entity: Entity, day: int) -> Iterable[Record]:
        """Every record of `entity` as of the end of `day`, in (updated_at, *key) order."""

    def changes(self, spec: Any, entity: Entity, day: int) -> Iterable[Record]:
        """The records of `entity` that changed during `day` (its change feed)."""

    def truth(self, spec: Any, entities: Sequence[Entity], days: Sequence[int]) -> Iterable[LocatedDefect]:
        """The defects the files of `days` (ascending) carry, of `entities`, then those withheld from the last
        day's feed (pending)."""


@dataclass(frozen=True)
class ManifestFile:
    """One exported file: what it holds and how to check it arrived whole."""

    path: str
    """File name, relative to the manifest's directory."""
    registry: str
    entity: str
    day: int
    kind: ExportKind
    format: ExportFormat
    compression: Literal["gzip"] | None
    rows: int
    bytes: int
    sha256: str
    columns: tuple[str, ...]
    """Field names in file order (the CSV header; for JSON Lines, the union of the records' fields)."""
    date_format: str | None
    """strptime format of date fields in the file; None: the API's wire form (ISO 8601)."""


@dataclass(frozen=True)
class TruthFile:
    """The ground truth written beside the files (see the module docstring for its lines)."""

    path: str
    compression: Literal["gzip"] | None
    rows: int
    """Defects and anomalies listed, the pending ones included."""
    pending: int
    """Of which withheld from the last exported day's feed: in no exported file."""
    last_day: int
    """The last exported day: the pending ones are listed under last_day + 1."""
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What an export wrote; `manifest.json` is its JSON form."""

    spec: dict[str, Any]
    files: tuple[ManifestFile, ...]
    version: int = MANIFEST_VERSION
    ground_truth: TruthFile | None = None
    """None only in a version-1 manifest, written before exports carried their ground truth."""

    def to_json(self) -> str:
        body = {"version": self.version, "generator": "kho-simulator", "encoding": "utf-8", "spec": self.spec,
                "files": [dataclasses.asdict(f) for f in self.files],
                "ground_truth": dataclasses.asdict(self.ground_truth) if self.ground_truth else None}
        return json.dumps(body, ensure_ascii=False, indent=2) + "\n"

    @classmethod
    def read(cls, directory: Path | str) -> Manifest:
        """The manifest of an export directory (for a loader, or a test)."""
        path = Path(directory) / MANIFEST_NAME
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            files = tuple(ManifestFile(**{**f, "columns": tuple(f["columns"])}) for f in body["files"])
            truth = body.get("ground_truth")
            return cls(spec=body["spec"], files=files, version=body["version"],
                       ground_truth=TruthFile(**truth) if truth is not None else None)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a kho export manifest: {exc}") from exc

    def verify(self, directory: Path | str) -> list[str]:
        """Problems with the files on disk, the ground truth's included (missing, wrong size or checksum); empty
        when all arrived whole."""
        problems = []
        listed: list[ManifestFile | TruthFile] = [*self.files, *([self.ground_truth] if self.ground_truth else [])]
        for f in listed:
            path = Path(directory) / f.path
            if not path.is_file():
                problems.append(f"{f.path}: missing")
                continue
            size, digest = _file_digest(path)
            if (size, digest) != (f.bytes, f.sha256):
                problems.append(f"{f.path}: {size} bytes with sha256 {digest}, the manifest says {f.bytes} "
                                f"bytes with {f.sha256}")
        return problems

    def summary(self) -> str:
        """One line per file, then the ground truth, then the totals: what `kho simulate export` prints."""
        lines = [f"{f.path}: {f.rows} rows, {f.bytes} bytes, sha256 {f.sha256[:12]}…" for f in self.files]
        truth = self.ground_truth
        if truth is not None:
            withheld = (f", {truth.pending} pending: withheld from day {truth.last_day}'s feed, in no file"
                        if truth.pending else "")
            lines.append(f"{truth.path}: ground truth, {truth.rows} defects and anomalies{withheld}; "
                         f"{truth.bytes} bytes, sha256 {truth.sha256[:12]}…")
        total_rows = sum(f.rows for f in self.files if f.format == self.files[0].format) if self.files else 0
        lines.append(f"{len(self.files)} files, {sum(f.bytes for f in self.files)} bytes, {total_rows} records "
                     f"(seed {self.spec.get('seed')}, {self.spec.get('citizens')} citizens, "
                     f"{self.spec.get('days')} days, defect rate {self.spec.get('defect_rate')})")
        return "\n".join(lines)


def file_name(entity: Entity, day: int, fmt: ExportFormat, *, gzip: bool = False) -> str:
    """`<registry>__<entity>__day<NNN>.<csv|jsonl>[.gz]`."""
    return f"{entity.raw_table}__day{day:03d}.{fmt}" + (".gz" if gzip else "")


def export(spec: ExportSpec, out_dir: Path | str, *, entities: Sequence[Entity] | None = None,
           day: int | Iterable[int] = 0, formats: Sequence[ExportFormat] = FORMATS, gzip: bool = False,
           streams: RecordStreams | None = None) -> Manifest:
    """Write the export files of `entities` (default: every entity in `kho.sources`) for `day` (0: the
    snapshot; d >= 1: that day's changes; or several days), their ground truth, then `manifest.json`; return the
    manifest.
    """
    days = [day] if isinstance(day, int) else sorted(set(day))
    chosen = _entities(entities)
    fmts = _formats(formats)
    for d in days:
        if not 0 <= d <= spec.days:
            raise ConfigError(f"day {d} is outside the world's days 0..{spec.days}; pass --days {d} or more")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = streams or generator_streams()
    files: list[ManifestFile] = []
    for entity in chosen:
        for d in days:
            records = source.snapshot(spec, entity, d) if d == 0 else source.changes(spec, entity, d)
            files += _export_entity_day(records, entity, d, out, fmts, gzip)
    truth = _export_truth(source.truth(spec, chosen, days), chosen, days, files, out, gzip) if days else None
    manifest = Manifest(spec=_spec_json(spec), files=tuple(files), ground_truth=truth)
    _atomic_write(out / MANIFEST_NAME, manifest.to_json().encode("utf-8"))
    return manifest


def _entities(entities: Sequence[Entity] | None) -> tuple[Entity, ...]:
    if entities is None:
        from kho.sources import ENTITIES

        return ENTITIES
    if not entities:
        raise ConfigError("no entity to export: name at least one, or none for all")
    return tuple(entities)


def _formats(formats: Sequence[str]) -> tuple[ExportFormat, ...]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"export formats must be among {', '.join(FORMATS)}, not {list(formats)}")
    return tuple(f for f in FORMATS if f in formats)


def _export_entity_day(records: Iterable[Record], entity: Entity, day: int, out: Path,
                       formats: Sequence[ExportFormat], gzip: bool) -> list[ManifestFile]:
    kind: ExportKind = "snapshot" if day == 0 else "changes"
    spool = out / f".{entity.raw_table}__day{day:03d}.spool.jsonl"
    try:
        rows, columns = _spool(records, spool)
        columns = columns or entity.field_names  # an empty feed still gets the contract's header
        files = []
        for fmt in formats:
            path = out / file_name(entity, day, fmt, gzip=gzip)
            with _Sink(path, gzip) as sink:
                if fmt == "jsonl":
                    _copy(spool, sink)
                else:
                    _write_csv(spool, columns, entity, sink)
            files.append(ManifestFile(
                path=path.name, registry=entity.registry, entity=entity.name, day=day, kind=kind, format=fmt,
                compression="gzip" if gzip else None, rows=rows, bytes=sink.bytes, sha256=sink.sha256,
                columns=columns, date_format=entity.export_date_format if fmt == "csv" else None,
            ))
        return files
    finally:
        spool.unlink(missing_ok=True)


def truth_line(entry: LocatedDefect, entity: Entity, files: Sequence[str]) -> dict[str, Any]:
    """One line of `ground_truth.jsonl`: `Defect.to_json`'s fields, then where to find the record."""
    d = entry.defect
    return {"registry": d.registry, "entity": d.entity, "key": list(d.key), "kind": d.kind, "day": d.day,
            "expected": d.expected, "key_fields": list(entity.key), "pending": entry.file_day is None,
            "file_day": entry.file_day, "files": list(files)}


def _export_truth(entries: Iterable[LocatedDefect], entities: Sequence[Entity], days: Sequence[int],
                  files: Sequence[ManifestFile], out: Path, gzip: bool) -> TruthFile:
    """Write the ground truth of the exported entities and days; each entry names the files holding its record."""
    by_name = {e.qualified_name: e for e in entities}
    located: dict[tuple[str, int], list[str]] = {}
    for f in files:
        located.setdefault((f"{f.registry}.{f.entity}", f.day), []).append(f.path)
    rows = pending = 0
    path = out / (GROUND_TRUTH_NAME + (".gz" if gzip else ""))
    with _Sink(path, gzip) as sink:
        for batch in _batches(entries):
            lines = []
            for entry in batch:
                entity = by_name.get(f"{entry.defect.registry}.{entry.defect.entity}")
                if entity is None:
                    continue  # an entity not exported: its defects are not this export's
                held = [] if entry.file_day is None else located.get((entity.qualified_name, entry.file_day), [])
                lines.append(_JSON.encode(truth_line(entry, entity, held)) + "\n")
                pending += entry.file_day is None
            rows += len(lines)
            sink.put("".join(lines).encode("utf-8"))
    return TruthFile(path=path.name, compression="gzip" if gzip else None, rows=rows, pending=pending,
                     last_day=max(days), bytes=sink.bytes, sha256=sink.sha256)


def _spool(records: Iterable[Record], spool: Path) -> tuple[int, tuple[str, ...]]:
    """Write records as JSON Lines to `spool`; return their number and the union of their fields, in order."""
    rows = 0
    columns: dict[str, None] = {}
    shapes: set[tuple[str, ...]] = set()
    with spool.open("wb") as out:
        for batch in _batches(records):
            for record in batch:
                shape = tuple(record)
                if shape not in shapes:
                    shapes.add(shape)
                    columns.update(dict.fromkeys(shape))
            out.write("".join(_JSON.encode(dict(r)) + "\n" for r in batch).encode("utf-8"))
            rows += len(batch)
    return rows, tuple(columns)


def _batches(records: Iterable[T]) -> Iterator[list[T]]:
    batch: list[T] = []
    for record in records:
        batch.append(record)
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _copy(spool: Path, sink: _Sink) -> None:
    with spool.open("rb") as src:
        while chunk := src.read(_COPY_BYTES):
            sink.put(chunk)


def _write_csv(spool: Path, columns: Sequence[str], entity: Entity, sink: _Sink) -> None:
    """CSV from the spool: header, then rows in batches; date fields rewritten to the export date format."""
    rewrite = _date_rewriter(entity.export_date_format)
    date_columns = [i for i, name in enumerate(columns) if _is_date(entity, name)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(columns)
    with spool.open("r", encoding="utf-8") as src:
        while lines := src.readlines(_COPY_BYTES):
            for line in lines:
                record = json.loads(line)
                row = [record.get(name) for name in columns]
                for i in date_columns:
                    if row[i]:
                        row[i] = rewrite(row[i])
                writer.writerow(row)
            sink.put(text.getvalue().encode("utf-8"))
            text.seek(0)
            text.truncate()
    sink.put(text.getvalue().encode("utf-8"))


def _is_date(entity: Entity, name: str) -> bool:
    try:
        return entity.field(name).type == "date"
    except KeyError:
        return False


def _date_rewriter(fmt: str) -> Callable[[str], str]:
    """ISO `YYYY-MM-DD` text → `fmt`, rearranged as text so an impossible date (2001-02-30) stays what it was:
    an export must carry the registry's defects, not repair or drop them. Other text is left as it is.
    """
    template = fmt.replace("{", "{{").replace("}", "}}")
    template = template.replace("%d", "{d}").replace("%m", "{m}").replace("%Y", "{y}")
    if "%" in template:
        raise ConfigError(f"export date format {fmt!r} may only use %d, %m and %Y")

    def rewrite(value: str) -> str:
        match = _ISO_DATE.fullmatch(value)
        return template.format(y=match[1], m=match[2], d=match[3]) if match else value

    return rewrite


class _Sink:
    """A file written under a temporary name, hashed and counted as written, optionally gzipped on the way."""

    def __init__(self, path: Path, gzip: bool) -> None:
        self.path = path
        self._part = path.with_name(path.name + ".part")
        self._file = self._part.open("wb")
        self._hash = hashlib.sha256()
        self.bytes = 0
        # No file name and mtime 0 in the gzip header: the same content gives the same bytes on every run.
        self._gzip = (gzip_module.GzipFile(filename="", mode="wb", fileobj=self, mtime=0, compresslevel=6)
                      if gzip else None)

    def write(self, data: bytes) -> int:
        """The raw (possibly compressed) bytes, as they go to disk; GzipFile writes here."""
        self._hash.update(data)
        self.bytes += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def put(self, data: bytes) -> None:
        """Content bytes: compressed first when gzipping."""
        if self._gzip is not None:
            self._gzip.write(data)
        else:
            self.write(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._gzip is not None:
            self._gzip.close()
        self._file.close()
        if exc_type is None:
            os.replace(self._part, self.path)
        else:
            self._part.unlink(missing_ok=True)


def _file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as src:
        while chunk := src.read(_COPY_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)


def _spec_json(spec: ExportSpec) -> dict[str, Any]:
    """The spec's fields as JSON values: seed, citizens, days and defect_rate first, then any others."""
    named = {"seed": spec.seed, "citizens": spec.citizens, "days": spec.days, "defect_rate": spec.defect_rate}
    more: dict[str, Any] = {}
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        more = dataclasses.asdict(spec)
    return json.loads(json.dumps({**named, **more}, default=_json_value))


def _json_value(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


class _GeneratorStreams:
    """The world generator's streams (`kho.simulator.generate`)."""

    def snapshot(self, spec: Any, entity: Entity, day: int) -> Iterable[Record]:
        from kho.simulator.generate import stream_snapshot

        return stream_snapshot(spec, entity, day)

    def changes(self, spec: Any, entity: Entity, day: int) -> Iterable[Record]:
        from kho.simulator.generate import stream_changes

        return stream_changes(spec, entity, day)

    def truth(self, spec: Any, entities: Sequence[Entity], days: Sequence[int]) -> Iterable[LocatedDefect]:
        from kho.simulator.generate import stream_truth

        return stream_truth(spec, entities, days)


def generator_streams() -> RecordStreams:
    """The records of the generated world: what `export` writes unless a test gives other streams."""
    return _GeneratorStreams()
