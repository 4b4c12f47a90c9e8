"""Registry export files (CSV or JSON Lines, optionally gzipped) read as a stream of all-text Arrow tables.

Parsing happens in Arrow's C++ readers, block by block, so memory stays bounded by the block size whatever the
file's size. Every column is read as text: typing and checking belong to the contract check in `load`, so one
malformed value is quarantined instead of failing the whole file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from kho.errors import ExtractError

FileFormat = Literal["csv", "jsonl"]
T = TypeVar("T")
BLOCK_BYTES = 8 << 20
"""Arrow parses this much text at a time: big enough to amortise per-batch work, small enough to bound memory."""


@dataclass(frozen=True)
class ExportFile:
    """One export file and how to read it; the format is taken from the name unless given."""

    path: Path
    format: FileFormat
    compressed: bool

    @classmethod
    def of(cls, path: Path | str, fmt: FileFormat | None = None) -> ExportFile:
        path = Path(path)
        if not path.is_file():
            raise ExtractError(f"export file {path} does not exist or is not a file")
        suffixes = [s.lower() for s in path.suffixes]
        compressed = bool(suffixes) and suffixes[-1] == ".gz"
        data_suffix = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
        guessed: FileFormat | None = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(data_suffix)  # type: ignore[assignment]
        chosen = fmt or guessed
        if chosen is None:
            raise ExtractError(f"cannot tell the format of {path.name}: name it .csv/.jsonl[.gz] or pass the format")
        return cls(path, chosen, compressed)

    @property
    def size(self) -> int:
        """Bytes on disk (compressed size for .gz): the denominator of a progress bar."""
        return self.path.stat().st_size

    def _open_binary(self) -> tuple[pa.NativeFile, pa.NativeFile]:
        """(stream to parse, raw file): the raw file's position says how far through the file we are."""
        raw = pa.OSFile(str(self.path), "rb")
        return (pa.CompressedInputStream(raw, "gzip") if self.compressed else raw), raw

    def header(self) -> list[str]:
        """Column names of a CSV export (its first line)."""
        opener = gzip.open if self.compressed else open
        with opener(self.path, "rt", encoding="utf-8-sig", newline="") as fh:
            first = next(csv.reader(fh), None)
        if not first:
            raise ExtractError(f"{self.path.name} is empty: an export needs a header row")
        return [name.strip() for name in first]


def iter_file(export: ExportFile, *, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.Table]:
    """Yield all-text Arrow tables of at most about `block_bytes` of input each."""
    for table, _ in iter_file_progress(export, block_bytes=block_bytes):
        yield table


def iter_file_progress(export: ExportFile, *, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[pa.Table, int]]:
    """Like `iter_file`, with the bytes of the file on disk consumed so far beside each table."""
    stream, raw = export._open_binary()
    try:
        parts = _iter_csv(export, stream, block_bytes) if export.format == "csv" else _iter_jsonl(
            export, stream, block_bytes)
        for table in parts:
            yield table, raw.tell()
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise ExtractError(f"{export.path.name} is not valid {export.format.upper()}: {exc}") from exc
    finally:
        stream.close()
        raw.close()


def _iter_csv(export: ExportFile, stream: pa.NativeFile, block_bytes: int) -> Iterator[pa.Table]:
    names = export.header()
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=block_bytes, encoding="utf8"),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    )
    for batch in reader:
        yield pa.Table.from_batches([batch])


def _iter_jsonl(export: ExportFile, stream: pa.NativeFile, block_bytes: int) -> Iterator[pa.Table]:
    """JSON Lines in blocks of whole lines; values are rendered as text like the API client does."""
    options = pajson.ParseOptions(explicit_schema=_jsonl_schema(export), unexpected_field_behavior="infer")
    pending = b""
    while True:
        chunk = stream.read(block_bytes)
        if not chunk:
            break
        data = pending + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data
            continue
        pending = data[cut + 1:]
        yield _jsonl_block(data[: cut + 1], options)
    if pending.strip():
        yield _jsonl_block(pending, options)


def _jsonl_schema(export: ExportFile) -> pa.Schema:
    """Text fields of the first record stay text: Arrow must not guess timestamps out of ISO date strings."""
    opener = gzip.open if export.compressed else open
    with opener(export.path, "rt", encoding="utf-8") as fh:
        first = fh.readline()
    try:
        record = json.loads(first) if first.strip() else {}
    except json.JSONDecodeError as exc:
        raise ExtractError(f"{export.path.name}: line 1 is not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise ExtractError(f"{export.path.name}: line 1 is not a JSON object")
    return pa.schema([(name, pa.string()) for name, value in record.items() if isinstance(value, str)])


def _jsonl_block(block: bytes, options: pajson.ParseOptions) -> pa.Table:
    table = pajson.read_json(io.BytesIO(block), parse_options=options)
    columns = {}
    for name in table.column_names:
        col = table.column(name)
        if not pa.types.is_string(col.type):
            col = col.cast(pa.string()) if _castable(col.type) else pa.chunked_array(
                [pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())])
        columns[name] = col
    return pa.Table.from_pydict(columns)


def _castable(type_: pa.DataType) -> bool:
    return bool(pa.types.is_null(type_) or pa.types.is_integer(type_) or pa.types.is_floating(type_)
                or pa.types.is_boolean(type_) or pa.types.is_timestamp(type_) or pa.types.is_date(type_))


_DONE = object()


class _Producer:
    """The background half of `prefetch`: runs `items` into a bounded queue until done or told to stop."""

    def __init__(self, items: Iterator[object], depth: int) -> None:
        self.items = items
        self.slots: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="kho-prefetch", daemon=True)

    def offer(self, entry: tuple[object, BaseException | None]) -> bool:
        while not self.stop.is_set():
            try:
                self.slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            for item in self.items:
                if not self.offer((item, None)):
                    return
            self.offer((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.offer((_DONE, exc))
        finally:
            close = getattr(self.items, "close", None)
            if close is not None:
                close()


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate `items` on a background thread, up to `depth` items ahead of the consumer.

    Reading and parsing the next block of a file (Arrow releases the GIL) then overlaps with loading the current
    one. An exception in the producer is raised in the consumer, at the item where it happened; a consumer that
    stops early (an error, a `close()`) stops the producer and closes `items`.
    """
    producer = _Producer(items, depth)
    producer.thread.start()
    try:
        while True:
            item, error = producer.slots.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        producer.stop.set()
        producer.thread.join()
