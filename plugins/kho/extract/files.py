"""Registry export files (CSV or JSON Lines, optionally gzipped) read as a stream of blocks of all-text records.

A file is refused as a whole, with one line saying which file, what is wrong and what to do, only for what makes
every line unreadable: broken compression, another encoding, a header that is not the registry's, or a separator
that is not the registry's. Everything else is decided line by line: a line that is not a record (too few or too
many fields, invalid UTF-8, a NUL byte, invalid JSON, a quote never closed, longer than `max_line_bytes`) becomes
a `Defect` with its line number and bytes, and the lines around it load.

Clean blocks pay almost nothing for this. The file is cut into blocks of whole lines; one numpy pass finds each
line's span (to number the lines and bound their length) and a memchr looks for NUL. Arrow's C++ readers parse the
block as they always did; only when Arrow refuses a block, or the records it returns do not match the lines it was
given one for one, is that block read again line by line in Python to find out which lines are not records.
Every column is read as text: typing and checking belong to the contract check in `load`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import queue
import threading
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from kho.errors import ContractError, ExtractError
from kho.extract.block import (
    MAX_FIELD_NAME_CHARS,
    MAX_UNKNOWN_FIELDS,
    Block,
    Defect,
    UnknownFields,
    nul_field,
    with_rows,
)
from kho.sources.contract import Entity

FileFormat = Literal["csv", "jsonl"]
T = TypeVar("T")
BLOCK_BYTES = 8 << 20
"""Arrow parses this much text at a time: big enough to amortise per-batch work, small enough to bound memory."""
MAX_LINE_BYTES = 1 << 20
"""No registry record comes near a mebibyte; a longer line is quarantined (its first `KEPT_BYTES` kept) and read
past without holding it, so a hostile line cannot exhaust memory."""
KEPT_BYTES = 4096
"""How much of a too-long line the quarantine keeps."""
EXPORT_DELIMITER = ","
"""The field separator of every registry's CSV exports."""
_CANDIDATE_SEPARATORS = (",", ";", "\t", "|")
_GZIP_MAGIC = b"\x1f\x8b"
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_NO_LINES: npt.NDArray[np.int64] = np.zeros(0, np.int64)


def _refuse(path: Path, what: str, todo: str) -> ExtractError:
    return ExtractError(f"{path.name}: {what}; nothing was loaded. {todo}")


@dataclass(frozen=True)
class ExportFile:
    """One export file and how to read it; the format is taken from the name unless given, the compression from
    the file's first bytes (a gzip stream is read as one whatever its name; a `.gz` name on anything else is
    refused)."""

    path: Path
    format: FileFormat
    compressed: bool

    @classmethod
    def of(cls, path: Path | str, fmt: FileFormat | None = None) -> ExportFile:
        path = Path(path)
        if not path.is_file():
            raise ExtractError(f"export file {path} does not exist or is not a file")
        suffixes = [s.lower() for s in path.suffixes]
        named_gz = bool(suffixes) and suffixes[-1] == ".gz"
        data_suffix = suffixes[-2] if named_gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
        guessed: FileFormat | None = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(data_suffix)  # type: ignore[assignment]
        chosen = fmt or guessed
        if chosen is None:
            raise ExtractError(f"cannot tell the format of {path.name}: name it .csv/.jsonl[.gz] or pass the format")
        try:
            with path.open("rb") as fh:
                magic = fh.read(2)
        except OSError as exc:
            raise ExtractError(f"cannot read export file {path}: {exc.strerror or exc}") from None
        compressed = magic == _GZIP_MAGIC
        if named_gz and not compressed:
            raise _refuse(path, "is named .gz but is not gzip-compressed"
                          + (" (it is empty)" if not magic else f" (it starts with bytes {magic.hex(' ')})"),
                          "Ask the registry to send the file again, or rename it to what it holds.")
        return cls(path, chosen, compressed)

    @property
    def size(self) -> int:
        """Bytes on disk (compressed size for .gz): the denominator of a progress bar."""
        return self.path.stat().st_size


class _Source:
    """The file's bytes, decompressed; every read error is one line naming the file (never a traceback)."""

    def __init__(self, export: ExportFile) -> None:
        self.export = export
        self.raw: BinaryIO = export.path.open("rb")
        self.stream: BinaryIO = gzip.GzipFile(fileobj=self.raw, mode="rb") if export.compressed else self.raw  # type: ignore[assignment]
        self.consumed = 0

    def read(self, size: int) -> bytes:
        try:
            chunk = self.stream.read(size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            detail = str(exc) or type(exc).__name__
            if isinstance(exc, EOFError):
                detail = "the compressed stream ends before its end marker: the file is truncated"
            after = f" after {self.consumed:,} bytes" if self.consumed else ""
            raise _refuse(self.export.path, f"its gzip data is broken{after} ({detail})",
                          "Ask the registry to send the file again (`gzip -t` checks a copy).") from None
        except OSError as exc:
            raise ExtractError(f"cannot read export file {self.export.path}: {exc.strerror or exc}") from None
        self.consumed += len(chunk)
        return chunk

    @property
    def position(self) -> int:
        """Bytes of the file on disk read so far."""
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


@dataclass(frozen=True)
class Header:
    """A CSV export's column names, checked against its entity; `line_bytes` is how long the header line was."""

    names: tuple[str, ...]
    delimiter: str


def _first_line(source: _Source, limit: int) -> tuple[bytes, bytes]:
    """(the file's first line, the bytes read after its line break), holding no more than about `limit` bytes; a
    UTF-8 byte order mark is dropped. A first line longer than `limit` comes back longer: the caller refuses it."""
    buffer = b""
    while b"\n" not in buffer and len(buffer) <= limit:
        chunk = source.read(64 << 10)
        if not chunk:
            break
        buffer += chunk
    line, _, rest = buffer.removeprefix(codecs.BOM_UTF8).partition(b"\n")
    return line, rest


def _split_header(text: str, delimiter: str) -> list[str] | None:
    try:
        return [name.strip() for name in next(csv.reader([text], delimiter=delimiter, strict=True))]
    except (csv.Error, StopIteration):
        return None


def read_header(export: ExportFile, entity: Entity | None = None, *,
                max_line_bytes: int = MAX_LINE_BYTES) -> Header | None:
    """Check a CSV export's header line before anything is written; None for a file with no records at all.

    Refused as a whole (one line: the file, what is wrong, what to do): a header that is not UTF-8 (or a file in
    UTF-16), that holds a NUL or is longer than a line may be, that is not CSV, that repeats or leaves out a column
    name, that names none of the entity's fields, or whose separator is not the registry's.
    """
    text = _header_text(export, max_line_bytes)
    if text is None:
        return None
    path, delimiter = export.path, EXPORT_DELIMITER
    names = _split_header(text, delimiter)
    if names is None:
        raise _refuse(path, "its header is not valid CSV (a quote is not closed)", "Check the header line.")
    if entity is not None:
        _check_separator(path, text, names, entity, delimiter)
    if any(not name for name in names):
        where = ", ".join(str(i + 1) for i, name in enumerate(names) if not name)
        raise _refuse(path, f"its header has no name for column(s) {where}", "Every column needs a name.")
    outside = [name for name in names if entity is not None and name not in entity.field_names]
    overlong = [name for name in outside if len(name) > MAX_FIELD_NAME_CHARS]
    if overlong:
        raise _refuse(path, f"its header names a column of {len(overlong[0]):,} characters ({overlong[0][:40]!r}…); "
                      f"no registry field name is longer than {MAX_FIELD_NAME_CHARS}",
                      "Check that the file is this entity's export.")
    if len(outside) > MAX_UNKNOWN_FIELDS:
        raise _refuse(path, f"its header has {len(outside):,} columns the contract does not know (more than "
                      f"{MAX_UNKNOWN_FIELDS})", "Check that the file is this entity's export.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise _refuse(path, f"its header repeats column(s) {', '.join(repeated)}", "Every column needs its own name.")
    missing = [name for name in entity.required_fields if name not in names] if entity is not None else []
    if entity is not None and missing:
        other = looks_like(names, entity)
        if other is not None:
            raise _refuse(path, f"it looks like {other.qualified_name}'s export, not {entity.qualified_name}'s "
                          f"(its header has every field {other.qualified_name} requires; {entity.name} requires "
                          f"{', '.join(missing)})", f"Load it as `kho load {other.registry} {other.name} {path.name}`.")
        raise ContractError(
            f"registry {entity.registry}, entity {entity.name}: required field(s) {', '.join(missing)} absent "
            f"from the header of {path.name} (schema drift?). The file was refused and nothing was loaded; "
            "update the contract in kho.sources or ask the registry to restore the field."
        )
    return Header(tuple(names), delimiter)


def _header_text(export: ExportFile, max_line_bytes: int) -> str | None:
    """The header line as text, or None when the file holds nothing but blank lines (no records)."""
    path = export.path
    source = _Source(export)
    try:
        line, _ = _first_line(source, max_line_bytes)
    finally:
        source.close()
    if len(line) > max_line_bytes:
        raise _refuse(path, f"its first line is longer than {max_line_bytes:,} bytes: that is no header",
                      "Check that this is the registry's CSV export.")
    if line.startswith(_UTF16_BOMS):
        raise _refuse(path, "is UTF-16 encoded; registries export UTF-8",
                      "Convert it (iconv -f UTF-16 -t UTF-8) or ask the registry for a UTF-8 export.")
    line = line.removesuffix(b"\r")
    if not line.strip():
        if not _has_more_than_blank(export):
            return None
        raise _refuse(path, "its first line is blank; a CSV export starts with its header",
                      "Remove the blank line(s) before the header.")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(path, f"its header is not UTF-8 (byte 0x{line[exc.start]:02x} at byte {exc.start + 1})",
                      "Registries export UTF-8; convert the file (iconv -f <its encoding> -t UTF-8).") from None
    if "\x00" in text:
        raise _refuse(path, "its header holds a NUL byte", "Check that this is the registry's CSV export.")
    if text.lstrip().startswith("{"):
        raise _refuse(path, "looks like JSON Lines, not CSV", "Name it .jsonl, or pass the format.")
    return text


def _check_separator(path: Path, text: str, names: list[str], entity: Entity, delimiter: str) -> None:
    """Refuse a header that splits into more of the entity's fields on another separator, or names none."""
    fields = set(entity.field_names)
    known = len(fields.intersection(names))
    for other in _CANDIDATE_SEPARATORS:
        split = _split_header(text, other) if other != delimiter else None
        if split is not None and len(split) > 1 and len(fields.intersection(split)) > max(known, 1):
            raise _refuse(path, f"the separator looks like {other!r}; the {entity.registry} registry exports "
                          f"{delimiter!r}", f"Re-export with {delimiter!r} as the separator.")
    if not known:
        match = looks_like(names, entity)
        todo = (f"It looks like {match.qualified_name}'s export: `kho load {match.registry} {match.name} "
                f"{path.name}`." if match is not None else
                "Check that the file is this entity's export (registry and entity in the command).")
        raise _refuse(path, f"its header names none of {entity.qualified_name}'s fields "
                      f"({', '.join(entity.field_names[:4])}, …)", todo)


def looks_like(names: list[str], entity: Entity) -> Entity | None:
    """The catalogue's entity whose export this header is, when it is not `entity`'s: one whose required fields
    are all there, naming more of the header than `entity` does (the most, if several)."""
    from kho.sources import ENTITIES

    header = set(names)

    def overlap(candidate: Entity) -> int:
        return len(header.intersection(candidate.field_names))

    fits = [e for e in ENTITIES if e != entity and e.required_fields and header.issuperset(e.required_fields)
            and overlap(e) > overlap(entity)]
    return max(fits, key=lambda e: (overlap(e), -len(e.field_names)), default=None)


def _has_more_than_blank(export: ExportFile) -> bool:
    """True when some line of the file holds more than white space (read through, in bounded blocks)."""
    source = _Source(export)
    try:
        while chunk := source.read(BLOCK_BYTES):
            if chunk.strip():
                return True
        return False
    finally:
        source.close()


def iter_blocks(export: ExportFile, entity: Entity | None = None, *, block_bytes: int = BLOCK_BYTES,
                max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Block]:
    """Yield the file's records in blocks of about `block_bytes` of input, with the lines that are not records.

    A CSV file's header is checked first (`read_header`); a file with no records yields nothing.
    """
    header = read_header(export, entity, max_line_bytes=max_line_bytes) if export.format == "csv" else None
    if export.format == "csv" and header is None:
        return
    source = _Source(export)
    try:
        if header is not None:
            _, rest = _first_line(source, max_line_bytes)  # the header, checked above; data starts on line 2
            parse: _Blocks = _CsvBlocks(header)
        else:
            rest = source.read(len(codecs.BOM_UTF8)).removeprefix(codecs.BOM_UTF8)
            parse = _JsonBlocks(entity)
        cuts = _line_blocks(source, rest, block_bytes, max_line_bytes, first_line=2 if header is not None else 1)
        carry: Carry | None = None
        while True:
            try:
                data, first_line, defects, position, final = cuts.send(carry)
            except StopIteration:
                return
            block, carry = parse(data, first_line, defects, max_line_bytes, position, final)
            if block.records or block.blank_lines:
                yield block
    finally:
        source.close()


def iter_file(export: ExportFile, *, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.Table]:
    """Yield the records of the file as all-text Arrow tables (the lines that are not records are left out)."""
    for block in iter_blocks(export, block_bytes=block_bytes):
        yield block.table


def _line_blocks(source: _Source, pending: bytes, block_bytes: int, max_line_bytes: int, *,
                 first_line: int) -> Generator[tuple[bytes, int, list[Defect], int, bool], Carry | None, None]:
    """(bytes of whole lines, the first one's line number, lines too long to hold, file position, whether it is
    the last block) per block; a block's reader may send back its tail (`Carry`) to be read with the next one.

    `pending` is what was read past the header already. A line with no break within `max_line_bytes` is a
    defect: its first `KEPT_BYTES` are kept and the rest is read past, never held.
    """
    line_no = first_line
    long_lines: list[Defect] = []
    while True:
        chunk = source.read(block_bytes)
        if not chunk:
            break
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) <= max_line_bytes:
                pending = data
                continue
            pending = _skip_long_line(source, data, line_no, max_line_bytes, long_lines)
            line_no += 1
            continue
        block, pending = data[: cut + 1], data[cut + 1:]
        carry = yield block, line_no, long_lines, source.position, False
        long_lines = []
        if carry is None:  # driven without replies: count the lines here
            line_no += block.count(b"\n")
        else:  # the reader's reply: what to read again (if anything) and the next line's number
            pending, line_no = carry[0] + pending, carry[1]
    if pending or long_lines:
        yield pending, line_no, long_lines, source.position, True


def _skip_long_line(source: _Source, data: bytes, line_no: int, max_line_bytes: int,
                    defects: list[Defect]) -> bytes:
    """Record the line that starts `data` as too long, read to its end; returns what follows its line break."""
    total, head = len(data), data[:KEPT_BYTES]
    while True:
        chunk = source.read(1 << 20)
        if not chunk:
            rest = b""
            break
        cut = chunk.find(b"\n")
        own = chunk if cut < 0 else chunk[:cut]
        head += own[:KEPT_BYTES - len(head)]
        total += len(own)
        if cut >= 0:
            rest = chunk[cut + 1:]
            break
    defects.append(Defect("line_too_long", f"line of {total:,} bytes, longer than the {max_line_bytes:,} a line "
                          f"may be (the first {len(head):,} are kept)", head, line_no))
    return rest


@dataclass(frozen=True)
class _Lines:
    """Where each line of a block lies: `starts`/`ends` (line break and a CR before it excluded)."""

    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    full_ends: npt.NDArray[np.int64]
    """Ends including the line break (the next line's start)."""

    @classmethod
    def of(cls, data: bytes) -> _Lines:
        if not data:
            return cls(_NO_LINES, _NO_LINES, _NO_LINES)
        view = np.frombuffer(data, np.uint8)
        breaks = np.flatnonzero(view == 10).astype(np.int64)
        ends = breaks if data.endswith(b"\n") else np.append(breaks, np.int64(len(data)))
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        full_ends = np.minimum(ends + 1, len(data))
        nonempty = ends > starts
        cr = np.zeros(len(ends), bool)
        cr[nonempty] = view[ends[nonempty] - 1] == 13
        return cls(starts, ends - cr, full_ends)

    def __len__(self) -> int:
        return len(self.starts)


def _screen(data: bytes, lines: _Lines, first_line: int, max_line_bytes: int,
            defects: list[Defect]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(blank, bad) per line: empty lines, and lines too long or holding a NUL (recorded in `defects`)."""
    lengths = lines.ends - lines.starts
    blank = lengths == 0
    bad = lengths > max_line_bytes
    for i in np.flatnonzero(bad):
        s = int(lines.starts[i])
        defects.append(Defect("line_too_long", f"line of {int(lengths[i]):,} bytes, longer than the "
                              f"{max_line_bytes:,} a line may be (the first {KEPT_BYTES:,} are kept)",
                              data[s:min(s + KEPT_BYTES, int(lines.ends[i]))], first_line + int(i)))
    if b"\x00" in data:
        at = np.flatnonzero(np.frombuffer(data, np.uint8) == 0)
        for i in np.unique(np.searchsorted(lines.full_ends, at, side="right")):
            if bad[i]:
                continue
            bad[i] = True
            s, e = int(lines.starts[i]), int(lines.ends[i])
            line = data[s:e]
            at_byte = line.index(b"\x00") + 1
            defects.append(Defect("nul_byte", f"a NUL byte at byte {at_byte} of the line (PostgreSQL text cannot "
                                  "hold one)", line, first_line + int(i)))
    return blank, bad


def _utf8(data: bytes) -> bool:
    """Whether `data` is valid UTF-8, checked by Arrow's SIMD validator (a tenth of the cost of decoding it).

    Arrow's CSV reader checks its text columns itself, but not the text of a line it cannot parse, and its JSON
    reader checks neither; invalid bytes must never reach either, nor PostgreSQL."""
    try:
        pa.array([data], pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return False
    return True


def _stray_cr(data: bytes, lines: _Lines) -> bool:
    """A carriage return that does not end a line: Arrow's readers break lines there too, so a line holding one
    may give Arrow two records."""
    if b"\r" not in data:
        return False
    view = np.frombuffer(data, np.uint8)
    crs = int(np.count_nonzero(view == 13))
    ending = lines.full_ends > lines.ends  # a line break follows
    with_cr = int(np.count_nonzero(lines.full_ends[ending] - lines.ends[ending] == 2))
    return crs != with_cr


def _kept_data(data: bytes, lines: _Lines, kept: npt.NDArray[np.int64]) -> bytes:
    """The block's bytes without the lines not kept, copying one contiguous run of kept lines at a time."""
    if len(kept) == len(lines):
        return data
    if not len(kept):
        return b""
    runs = np.flatnonzero(np.diff(kept) != 1) + 1
    firsts = np.concatenate(([kept[0]], kept[runs]))
    lasts = np.concatenate((kept[runs - 1], [kept[-1]]))
    parts = [data[int(lines.starts[a]):int(lines.full_ends[b])] for a, b in zip(firsts, lasts, strict=True)]
    joined = b"".join(parts)
    return joined if joined.endswith(b"\n") else joined + b"\n"


@dataclass
class _Slow:
    """What reading a block line by line found: records, where each lies, and where the block must stop."""

    records: list[object]
    rows: list[int]
    """Per record, the index of its (first) line."""
    ends: list[int]
    """Per record, where its (last) line ends in the block."""
    blanks: int = 0
    carry: int | None = None
    """Index of a line whose record may go on in the next block: it and every line after it are read again there."""


Carry = tuple[bytes, int]
"""The reply to the block reader: bytes to read again at the start of the next block (a record that may go on
there; usually none), and the line number the next block starts at."""


class _Blocks:
    """Turn a block of whole lines into a `Block`: fast through Arrow, line by line only where Arrow refuses."""

    def __call__(self, data: bytes, first_line: int, long_lines: list[Defect], max_line_bytes: int,
                 position: int, final: bool) -> tuple[Block, Carry]:
        lines = _Lines.of(data)
        defects = list(long_lines)
        blank, bad = _screen(data, lines, first_line, max_line_bytes, defects)
        kept = np.flatnonzero(~(blank | bad)).astype(np.int64)
        kept_data = _kept_data(data, lines, kept)
        table = None
        if not len(kept):
            table = self.empty()
        elif self.valid_text(kept_data) and not _stray_cr(data, lines) and self.one_per_line(data, lines, kept):
            table = self.fast(kept_data, len(kept))
        if table is not None:
            block = Block(table, tuple(sorted(defects, key=_line_of)), first_line, kept, data, lines.starts[kept],
                          lines.ends[kept], int(blank.sum()), position)
            return block, (b"", first_line + len(lines))
        slow = self.slow(data, lines, bad, first_line, defects, max_line_bytes, final)
        carry: Carry = (b"", first_line + len(lines))
        if slow.carry is not None:  # lines from there on are screened and read again with the next block
            carry = (data[int(lines.starts[slow.carry]):], first_line + slow.carry)
            defects = [d for d in defects if _line_of(d) < first_line + slow.carry]
        rows = np.array(slow.rows, np.int64)
        block = Block(self.table(slow.records, data), tuple(sorted(defects, key=_line_of)), first_line, rows, data,
                      lines.starts[rows], np.array(slow.ends, np.int64), slow.blanks, position)
        return block, carry

    def fast(self, data: bytes, expected: int) -> pa.Table | None:
        """Arrow's parse of the kept lines, or None unless it gave exactly one record per line."""
        raise NotImplementedError

    def valid_text(self, data: bytes) -> bool:
        """Whether the kept lines may go to Arrow's reader: no bytes that are not UTF-8 (`_utf8`)."""
        return _utf8(data)

    def one_per_line(self, data: bytes, lines: _Lines, kept: npt.NDArray[np.int64]) -> bool:
        """False when some kept line could give Arrow more than one record: then a record's line cannot be told
        from the count alone (a line giving fewer is told by the count)."""
        return True

    def empty(self) -> pa.Table:
        raise NotImplementedError

    def slow(self, data: bytes, lines: _Lines, bad: npt.NDArray[np.bool_], first_line: int, defects: list[Defect],
             max_line_bytes: int, final: bool) -> _Slow:
        """Line by line (the lines `bad` marks are defects already): records, blank lines, and new defects."""
        out = _Slow([], [], [])
        i = 0
        while i < len(lines):
            if bad[i]:
                i += 1
                continue
            s, e = int(lines.starts[i]), int(lines.ends[i])
            line = data[s:e]
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                defects.append(Defect("invalid_encoding", f"not UTF-8: byte 0x{line[exc.start]:02x} at byte "
                                      f"{exc.start + 1} of the line", line, first_line + i))
                i += 1
                continue
            if not text.strip():
                out.blanks += 1
                i += 1
                continue
            outcome = self.record(text)
            if isinstance(outcome, Defect) and outcome.code == "unterminated_quote":
                joined = self.join(data, lines, bad, i, max_line_bytes, final)
                if joined == "carry":
                    out.carry = i
                    return out
                if isinstance(joined, tuple):  # a quoted value with line breaks: one record over several lines
                    record, last = joined
                    out.records.append(record)
                    out.rows.append(i)
                    out.ends.append(int(lines.ends[last]))
                    i = last + 1
                    continue
            if isinstance(outcome, Defect):
                defects.append(Defect(outcome.code, outcome.reason, line, first_line + i))
            else:
                out.records.append(outcome)
                out.rows.append(i)
                out.ends.append(e)
            i += 1
        return out

    def join(self, data: bytes, lines: _Lines, bad: npt.NDArray[np.bool_], first: int, max_line_bytes: int,
             final: bool) -> tuple[object, int] | Literal["carry"] | None:
        """A record that starts on line `first` and goes on over the next lines, with its last line's index;
        "carry" when it may go on past the block; None when it is not one."""
        return None

    def record(self, text: str) -> object:
        raise NotImplementedError

    def table(self, records: list[object], data: bytes) -> pa.Table:
        raise NotImplementedError


def _line_of(defect: Defect) -> int:
    return defect.line or 0


MAX_RECORD_LINES = 16
"""A quoted CSV value may hold line breaks (RFC 4180), but no registry record spans more lines than this: a quote
still open after them is a quote never closed, and only its own line is quarantined."""


class _CsvBlocks(_Blocks):
    def __init__(self, header: Header) -> None:
        self.header = header
        names = list(header.names)
        self.read_options = pacsv.ReadOptions(column_names=names, block_size=BLOCK_BYTES)
        self.parse = pacsv.ParseOptions(delimiter=header.delimiter, newlines_in_values=False)
        self.convert_options = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        )

    def fast(self, data: bytes, expected: int) -> pa.Table | None:
        """Arrow refuses a ragged row (no handler: a bad line's text never reaches Python) and validates the
        UTF-8 of every value (all columns are text), so any such line sends the block line by line."""
        try:
            table = pacsv.read_csv(pa.BufferReader(data), read_options=self.read_options, parse_options=self.parse,
                                   convert_options=self.convert_options)
        except pa.ArrowInvalid:
            return None
        return table if table.num_rows == expected else None

    def valid_text(self, data: bytes) -> bool:
        return True  # Arrow's CSV reader checks it (ConvertOptions.check_utf8)

    def empty(self) -> pa.Table:
        return pa.Table.from_arrays([pa.array([], pa.string()) for _ in self.header.names],
                                    names=list(self.header.names))

    def record(self, text: str) -> object:
        try:
            fields = next(csv.reader([text], delimiter=self.header.delimiter, strict=True))
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                return Defect("unterminated_quote", "a quoted value is not closed on its line", b"")
            return Defect("malformed_line", f"not a CSV record ({exc})".replace(
                " - do you need to open the file in universal-newline mode?", ""), b"")
        if len(fields) != len(self.header.names):
            return Defect("ragged_line", f"{len(fields)} field(s) where the header has {len(self.header.names)}",
                          b"")
        return fields

    def join(self, data: bytes, lines: _Lines, bad: npt.NDArray[np.bool_], first: int, max_line_bytes: int,
             final: bool) -> tuple[object, int] | Literal["carry"] | None:
        start = int(lines.starts[first])
        for last in range(first + 1, min(first + MAX_RECORD_LINES, len(lines))):
            if bad[last] or int(lines.ends[last]) - start > max_line_bytes:
                return None
            try:
                text = data[start:int(lines.ends[last])].decode("utf-8")
                rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=self.header.delimiter, strict=True))
            except UnicodeDecodeError:
                return None
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    continue
                return None
            if len(rows) == 1 and len(rows[0]) == len(self.header.names):
                return rows[0], last
            return None
        if not final and len(lines) - first < MAX_RECORD_LINES:
            return "carry"  # the block ends before the quote could close: read these lines with the next block
        return None

    def table(self, records: list[object], data: bytes) -> pa.Table:
        names = self.header.names
        if not records:
            return self.empty()
        columns = list(zip(*records, strict=True))
        return pa.Table.from_arrays(
            [pa.array([v if v != "" else None for v in col], pa.string()) for col in columns], names=list(names))


class _JsonBlocks(_Blocks):
    def __init__(self, entity: Entity | None) -> None:
        self.fields = entity.field_names if entity is not None else ()
        self.unknown = UnknownFields(self.fields)

    def one_per_line(self, data: bytes, lines: _Lines, kept: npt.NDArray[np.int64]) -> bool:
        """Every kept line starts with `{` and ends with `}` (so no object spans lines), and no `\\u0000` escape
        (a NUL, which PostgreSQL text cannot hold) is anywhere: else the block is read line by line."""
        if b"\\u0000" in data:
            return False
        view = np.frombuffer(data, np.uint8)
        return bool(np.all(view[lines.starts[kept]] == ord("{")) and np.all(view[lines.ends[kept] - 1] == ord("}")))

    def fast(self, data: bytes, expected: int) -> pa.Table | None:
        """Arrow's parse with the first record's fields (text as text: Arrow must not guess timestamps out of ISO
        strings) and every contract field the block names at all; a record with any other field, or a value of
        another JSON type, sends the block to the line-by-line path, which bounds the fields a block may bring."""
        first = data[: data.find(b"\n")] if b"\n" in data else data
        try:
            record = json.loads(first)
        except ValueError:
            return None
        if not isinstance(record, dict) or UnknownFields(self.fields).admit(record) is not None:
            return None
        types = {name: _ARROW_JSON_TYPES.get(type(value)) for name, value in record.items()}
        if any(t is None for t in types.values()):  # a nested value: rendered as JSON text by the slow path
            return None
        types.update({name: pa.string() for name in self.fields if f'"{name}"'.encode() in data})
        schema = pa.schema(list(types.items()))
        options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        try:
            table = pajson.read_json(pa.BufferReader(data), parse_options=options,
                                     read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return _as_text_table(table) if table.num_rows == expected else None

    def empty(self) -> pa.Table:
        return pa.table({})

    def slow(self, data: bytes, lines: _Lines, bad: npt.NDArray[np.bool_], first_line: int, defects: list[Defect],
             max_line_bytes: int, final: bool) -> _Slow:
        self.unknown = UnknownFields(self.fields)
        return super().slow(data, lines, bad, first_line, defects, max_line_bytes, final)

    def record(self, text: str) -> object:
        try:
            record = json.loads(text)
        except ValueError as exc:
            where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            return Defect("invalid_json", f"not JSON: {message}{where}", b"")
        if not isinstance(record, dict):
            return Defect("not_an_object", f"a JSON {_json_kind(record)} where a record (an object) was expected",
                          b"")
        unpaired = _unpaired_surrogate(record)
        if unpaired is not None:
            return Defect("invalid_encoding", f"{unpaired} holds an unpaired surrogate (not Unicode text)", b"")
        refused = self.unknown.admit(record)
        if refused is not None:
            return Defect(refused[0], refused[1], b"")
        holding = nul_field(record)
        if holding is not None:
            return Defect("nul_byte", f"{holding} holds a NUL (\\u0000; PostgreSQL text cannot hold one)", b"")
        return record

    def table(self, records: list[object], data: bytes) -> pa.Table:
        """The good records' table; a contract field the block names but no good record holds is a column of
        nulls, as the fast path makes it (absent from every line of a block is schema drift; from some, not)."""
        from kho.extract.api import records_to_table

        table = with_rows(records_to_table(records), len(records)) if records else self.empty()  # type: ignore[arg-type]
        for name in self.fields:
            if name not in table.column_names and f'"{name}"'.encode() in data:
                table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
        return table


_ARROW_JSON_TYPES: dict[type, pa.DataType] = {
    str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(), type(None): pa.string()}
"""The Arrow type a first record's JSON value fixes for its field (null: text, the wire form of every field)."""


def _json_kind(value: object) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _unpaired_surrogate(record: dict[str, object]) -> str | None:
    """The first field whose name or value cannot be UTF-8 (a lone \\ud800 escape), or None."""
    for name, value in record.items():
        for text in (name, json.dumps(value, ensure_ascii=False)):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return repr(name)
    return None


def _as_text_table(table: pa.Table) -> pa.Table:
    """Every column as text, like the API client renders values (nested values as JSON text)."""
    from kho.extract.api import as_text

    columns = []
    for name in table.column_names:
        col = table.column(name)
        if not pa.types.is_string(col.type):
            col = col.cast(pa.string()) if _castable(col.type) else pa.chunked_array(
                [pa.array([as_text(v) for v in col.to_pylist()], pa.string())])
        columns.append(col)
    return with_rows(pa.Table.from_arrays(columns, names=table.column_names), table.num_rows)


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
