"""Export files: what the manifest says matches the files (the ground truth's included), CSV dates are dd/mm/yyyy,
gzip round-trips, the same spec gives the same bytes, and a large export streams in bounded memory. The generated
world's ground truth against its files: tests/unit/simulator/test_ground_truth.py."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kho.cli import main
from kho.config import PROJECT_ROOT
from kho.errors import ConfigError
from kho.simulator.export import (
    GROUND_TRUTH_NAME,
    MANIFEST_NAME,
    Manifest,
    ManifestFile,
    TruthFile,
    export,
    file_name,
    generator_streams,
)
from kho.sources import ENTITIES
from kho.sources.population import CITIZENS
from tests.unit.simulator.fakes import THINGS, stamp


@dataclass(frozen=True)
class Spec:
    seed: int = 1
    citizens: int = 50
    days: int = 2
    defect_rate: float = 0.0


@dataclass(frozen=True)
class FakeDefect:
    registry: str
    entity: str
    key: tuple[str, ...]
    kind: str
    day: int
    expected: str


@dataclass(frozen=True)
class Located:
    defect: FakeDefect
    file_day: int | None


class FakeStreams:
    """Records made from (seed, index): a snapshot of `spec.citizens` rows and a few changes per day. The truth:
    the first record of each (entity, day) file, one defect of an entity never exported, and, pending, the record
    the last day's feed would have had next."""

    def __init__(self, drift_day: int | None = None) -> None:
        self.drift_day = drift_day

    def snapshot(self, spec: Any, entity: Any, day: int) -> Iterator[dict[str, str | None]]:
        for i in range(spec.citizens):
            yield self._record(spec, entity, i, day)

    def changes(self, spec: Any, entity: Any, day: int) -> Iterator[dict[str, str | None]]:
        for i in range(day * 3):
            record = self._record(spec, entity, i, day)
            if day == self.drift_day and i % 2:
                record["nickname"] = f"bé {i}"
            yield record

    def truth(self, spec: Any, entities: Sequence[Any], days: Sequence[int]) -> Iterator[Located]:
        for day in days:
            for entity in entities:
                if day == 0 and not spec.citizens:
                    continue
                yield Located(self._defect(spec, entity, 0, day, day), day)
            yield Located(FakeDefect("business", "enterprises", ("0100000001",), "legal_rep_unknown", day,
                                     "anomaly:legal_rep_unknown"), day)
        last = max(days)
        if last >= 1:
            yield Located(self._defect(spec, entities[0], last * 3, last, last + 1), None)

    def _defect(self, spec: Any, entity: Any, i: int, day: int, listed: int) -> FakeDefect:
        record = self._record(spec, entity, i, day)
        kind = "malformed_id" if listed == day else "late_arriving_update"
        expected = "quarantine:malformed" if listed == day else "anomaly:late_arriving_update"
        return FakeDefect(entity.registry, entity.name, tuple(str(record[k]) for k in entity.key), kind, listed,
                          expected)

    @staticmethod
    def _record(spec: Any, entity: Any, i: int, day: int) -> dict[str, str | None]:
        if entity == THINGS:
            return {"book": f"B{spec.seed}", "line": f"{i:05d}", "registered_on": "2025-06-01",
                    "note": 'a "quoted", multi\nline note' if i == 1 else None, "updated_at": stamp(i + day * 86400)}
        return {"cccd": f"{spec.seed:03d}{i:09d}", "full_name": "Nguyễn Thị Hương",
                "date_of_birth": "2001-02-30" if i == 2 else f"19{50 + i % 50:02d}-0{1 + i % 9}-1{i % 10}",
                "status": "alive", "updated_at": stamp(i + day * 86400)}


def run(out: Path, **kwargs: Any) -> Manifest:
    params: dict[str, Any] = {"entities": [CITIZENS, THINGS], "streams": FakeStreams(), "day": range(3)}
    params.update(kwargs)
    spec = params.pop("spec", Spec())
    return export(spec, out, **params)


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")


def test_files_are_named_by_registry_entity_and_day_with_snapshot_then_changes(tmp_path: Path) -> None:
    manifest = run(tmp_path)
    assert [f.path for f in manifest.files if f.entity == "citizens" and f.format == "csv"] == [
        "population__citizens__day000.csv", "population__citizens__day001.csv", "population__citizens__day002.csv"]
    assert {(f.day, f.kind) for f in manifest.files} == {(0, "snapshot"), (1, "changes"), (2, "changes")}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f.path for f in manifest.files] + [MANIFEST_NAME, GROUND_TRUTH_NAME])
    assert file_name(THINGS, 7, "jsonl", gzip=True) == "civil_status__things__day007.jsonl.gz"


def test_the_manifest_row_counts_sizes_and_checksums_match_the_files(tmp_path: Path) -> None:
    manifest = run(tmp_path, gzip=True)
    assert Manifest.read(tmp_path) == manifest
    assert manifest.verify(tmp_path) == []
    for f in manifest.files:
        raw = (tmp_path / f.path).read_bytes()
        assert (f.bytes, f.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
        text = read_text(tmp_path / f.path)
        counted = len(list(csv.reader(io.StringIO(text)))) - 1 if f.format == "csv" else len(text.splitlines())
        assert counted == f.rows == (50 if f.day == 0 else 3 * f.day)
    body = json.loads((tmp_path / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert body["spec"] == {"seed": 1, "citizens": 50, "days": 2, "defect_rate": 0.0}
    assert set(body["files"][0]) >= {"path", "registry", "entity", "day", "kind", "format", "rows", "sha256", "bytes"}


def test_verify_names_a_file_that_changed_after_the_export(tmp_path: Path) -> None:
    manifest = run(tmp_path)
    (tmp_path / manifest.files[0].path).write_text("cccd\n", encoding="utf-8")
    (tmp_path / manifest.files[1].path).unlink()
    assert [p.split(":")[0] for p in manifest.verify(tmp_path)] == [manifest.files[0].path, manifest.files[1].path]


def truth_lines(directory: Path, manifest: Manifest) -> list[dict[str, Any]]:
    assert manifest.ground_truth is not None
    return [json.loads(line) for line in read_text(directory / manifest.ground_truth.path).splitlines()]


def test_the_ground_truth_is_written_beside_the_files_and_listed_and_verified_like_them(tmp_path: Path) -> None:
    manifest = run(tmp_path, gzip=True)
    truth = manifest.ground_truth
    assert truth is not None and truth.path == GROUND_TRUTH_NAME + ".gz" and truth.compression == "gzip"
    raw = (tmp_path / truth.path).read_bytes()
    assert (truth.bytes, truth.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    lines = truth_lines(tmp_path, manifest)
    assert (truth.rows, truth.pending, truth.last_day) == (len(lines), 1, 2)
    assert Manifest.read(tmp_path) == manifest
    assert json.loads((tmp_path / MANIFEST_NAME).read_text(encoding="utf-8"))["ground_truth"]["rows"] == 7
    assert manifest.verify(tmp_path) == []
    (tmp_path / truth.path).write_bytes(raw[:-1])
    assert [p.split(":")[0] for p in manifest.verify(tmp_path)] == [truth.path]
    (tmp_path / truth.path).unlink()
    assert manifest.verify(tmp_path) == [f"{truth.path}: missing"]


def test_each_truth_line_keeps_the_defect_fields_and_names_the_files_holding_its_record(tmp_path: Path) -> None:
    manifest = run(tmp_path, day=[0, 2])
    lines = truth_lines(tmp_path, manifest)
    # Defect.to_json's fields first, unchanged, for the readers of write_manifest's lines
    assert [list(line)[:6] for line in lines] == [["registry", "entity", "key", "kind", "day", "expected"]] * 5
    assert [(line["entity"], line["day"], line["file_day"], line["pending"]) for line in lines] == [
        ("citizens", 0, 0, False), ("things", 0, 0, False), ("citizens", 2, 2, False), ("things", 2, 2, False),
        ("citizens", 3, None, True)]  # the unexported entity's defects are left out; the pending come last
    assert lines[3]["files"] == ["civil_status__things__day002.csv", "civil_status__things__day002.jsonl"]
    assert lines[3]["key"] == ["B1", "00000"] and lines[3]["key_fields"] == ["book", "line"]
    assert lines[4]["files"] == [] and lines[4]["kind"] == "late_arriving_update"
    for line in lines[:4]:
        for name in line["files"]:
            records = [json.loads(r) for r in read_text(tmp_path / name.replace(".csv", ".jsonl")).splitlines()]
            assert line["key"] in [[r[k] for k in line["key_fields"]] for r in records]


def test_the_summary_prints_the_ground_truth_and_its_pending_defects(tmp_path: Path) -> None:
    summary = run(tmp_path).summary().splitlines()
    assert summary[-2].startswith(f"{GROUND_TRUTH_NAME}: ground truth, 7 defects and anomalies, 1 pending: "
                                  "withheld from day 2's feed, in no file; ")
    assert "pending" not in run(tmp_path / "zero", day=0).summary()


def test_a_version_1_manifest_without_ground_truth_still_reads_and_verifies(tmp_path: Path) -> None:
    manifest = run(tmp_path)
    body = json.loads((tmp_path / MANIFEST_NAME).read_text(encoding="utf-8"))
    del body["ground_truth"]
    body["version"] = 1
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(body), encoding="utf-8")
    old = Manifest.read(tmp_path)
    assert old.ground_truth is None and old.files == manifest.files and old.verify(tmp_path) == []
    assert isinstance(manifest.ground_truth, TruthFile) and isinstance(old.files[0], ManifestFile)


def test_csv_is_utf8_with_a_header_and_dd_mm_yyyy_dates_while_timestamps_stay_iso(tmp_path: Path) -> None:
    run(tmp_path, formats=("csv",), day=0)
    rows = list(csv.DictReader(io.StringIO(read_text(tmp_path / "population__citizens__day000.csv"))))
    assert list(rows[0]) == ["cccd", "full_name", "date_of_birth", "status", "updated_at"]
    assert rows[0]["date_of_birth"] == "10/01/1950" and rows[0]["full_name"] == "Nguyễn Thị Hương"
    assert rows[2]["date_of_birth"] == "30/02/2001"  # a defect is exported as the registry has it, not repaired
    assert rows[0]["updated_at"] == "2025-06-30T00:00:00Z"
    things = list(csv.DictReader(io.StringIO(read_text(tmp_path / "civil_status__things__day000.csv"))))
    assert things[0]["registered_on"] == "01/06/2025"
    assert things[1]["note"] == 'a "quoted", multi\nline note' and things[0]["note"] == ""


def test_json_lines_keep_the_wire_form(tmp_path: Path) -> None:
    run(tmp_path, formats=("jsonl",), day=0)
    lines = read_text(tmp_path / "population__citizens__day000.jsonl").splitlines()
    first = json.loads(lines[0])
    assert first == FakeStreams._record(Spec(), CITIZENS, 0, 0)
    assert "Nguyễn" in lines[0] and all(json.loads(line)["date_of_birth"][4] == "-" for line in lines)


def test_gzip_round_trips_to_the_plain_files(tmp_path: Path) -> None:
    plain = run(tmp_path / "plain")
    packed = run(tmp_path / "gz", gzip=True)
    for p, g in zip(plain.files, packed.files, strict=True):
        assert g.path == p.path + ".gz" and g.compression == "gzip" and g.rows == p.rows
        assert read_text(tmp_path / "gz" / g.path) == read_text(tmp_path / "plain" / p.path)


def test_the_same_spec_gives_byte_identical_files_and_manifest(tmp_path: Path) -> None:
    run(tmp_path / "a", gzip=True)
    run(tmp_path / "b", gzip=True)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    other = run(tmp_path / "c", spec=Spec(seed=2), gzip=True)
    assert other.files[0].sha256 != Manifest.read(tmp_path / "a").files[0].sha256


def test_a_field_that_appears_mid_feed_gets_a_csv_column(tmp_path: Path) -> None:
    run(tmp_path, streams=FakeStreams(drift_day=2), day=2, formats=("csv",))
    rows = list(csv.DictReader(io.StringIO(read_text(tmp_path / "population__citizens__day002.csv"))))
    assert list(rows[0])[-1] == "nickname"
    assert [r["nickname"] for r in rows[:3]] == ["", "bé 1", ""]


def test_an_empty_feed_is_a_header_only_file_with_the_contract_fields(tmp_path: Path) -> None:
    manifest = run(tmp_path, spec=Spec(citizens=0), day=0, formats=("csv",), entities=[CITIZENS])
    assert manifest.files[0].rows == 0
    assert read_text(tmp_path / manifest.files[0].path) == ",".join(CITIZENS.field_names) + "\r\n"


def test_a_day_beyond_the_world_or_an_unknown_format_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outside the world's days"):
        run(tmp_path, day=3)
    with pytest.raises(ConfigError, match="formats"):
        run(tmp_path, formats=("parquet",))


_BOUNDED_EXPORT = """
import resource, sys, tempfile
from pathlib import Path
from kho.simulator.export import export
from kho.sources import ENTITIES
from kho.sources.population import CITIZENS
from tests.unit.simulator.test_export import FakeStreams, Spec

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with tempfile.TemporaryDirectory() as out:
    manifest = export(Spec(citizens=200_000, days=0), out, entities=[CITIZENS], streams=FakeStreams(), gzip=True)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(sum(f.rows for f in manifest.files), (after - before) * 1024)
"""


def test_a_large_snapshot_exports_in_bounded_memory() -> None:
    """200,000 records held at once would take well over 100 MB; the export holds one batch at a time.

    Measured in a fresh process: its peak resident size is not muddied by what earlier tests allocated.
    """
    result = subprocess.run([sys.executable, "-c", _BOUNDED_EXPORT], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=300, check=True)
    rows, growth = map(int, result.stdout.split())
    assert rows == 400_000  # CSV and JSON Lines
    assert growth < 40 * 2**20, f"the export grew the process by {growth / 2**20:.1f} MiB"


def test_the_generated_world_exports_a_snapshot_and_day_feeds(tmp_path: Path) -> None:
    from kho.simulator.generate import WorldSpec, stream_changes, stream_snapshot

    spec = WorldSpec(seed=7, citizens=300, days=2, defect_rate=0.05)
    manifest = export(spec, tmp_path, day=range(3), streams=generator_streams(), gzip=True)
    assert manifest.verify(tmp_path) == []
    assert {f.entity for f in manifest.files} >= {"citizens", "births", "enterprises", "coverage_periods"}
    for f in manifest.files:
        entity = next(e for e in ENTITIES if e.qualified_name == f"{f.registry}.{f.entity}")
        expected = stream_snapshot(spec, entity, 0) if f.day == 0 else stream_changes(spec, entity, f.day)
        assert f.rows == sum(1 for _ in expected), f.path
    assert manifest.spec["defect_kinds"] and manifest.spec["seed"] == 7
    citizens = list(csv.DictReader(io.StringIO(read_text(tmp_path / "population__citizens__day000.csv.gz"))))
    births = [r["date_of_birth"] for r in citizens if r["date_of_birth"]]
    assert sum(bool(re.fullmatch(r"\d{2}/\d{2}/\d{4}", d)) for d in births) >= 0.95 * len(births)


def test_kho_simulate_export_writes_the_files_and_prints_the_manifest_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KHO_HOME", str(tmp_path / "home"))
    out = tmp_path / "export"
    assert main(["simulate", "export", "--out", str(out), "--citizens", "40", "--seed", "3", "--format", "csv",
                 "--gzip", "--registry", "population", "--entity", "citizens"]) == 0
    printed = capsys.readouterr().out
    manifest = Manifest.read(out)
    assert manifest.files and all(f.path.endswith(".csv.gz") for f in manifest.files)
    assert str(out) in printed and manifest.files[0].path in printed
    assert manifest.verify(out) == []
    assert manifest.ground_truth is not None and manifest.ground_truth.path == "ground_truth.jsonl.gz"
    assert f"ground truth: {manifest.ground_truth.path}" in printed.splitlines()[0]
    assert f"{manifest.ground_truth.path}: ground truth, {manifest.ground_truth.rows} defects" in printed
