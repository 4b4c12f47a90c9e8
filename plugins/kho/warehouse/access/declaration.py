"""The access file: which agency reads which published datasets, for which provinces, with or without personal data.

One YAML file in the repository (access/agencies.yml) declares every agency; `kho access apply` makes the database
match it. The file is validated here, whole, before anything touches the database: every name that becomes an SQL
identifier must match a strict pattern (so quotes, semicolons, `$$` or SQL text in it are refused with the line
that holds them), and every value that becomes an SQL literal is bound or quoted by psycopg, never pasted.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from kho.errors import ConfigError

PiiAccess = Literal["none", "full"]
"""`none`: personal columns reach the agency masked (masked_<domain> views); `full`: in clear (mart_<domain>)."""

ROLE_PREFIX = "agency_"
SLUG_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
DATASET_PATTERN = r"^mart_[a-z][a-z0-9_]{0,50}(\.[a-z][a-z0-9_]{0,62})?$"
PROVINCE_PATTERN = r"^[0-9]{2}$"
ALL_PROVINCES = "all"
TIMEOUT_PATTERN = re.compile(r"^\s*([0-9]{1,7})\s*(ms|s|min|h)\s*$")
TIMEOUT_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
MAX_TIMEOUT = dt.timedelta(hours=24)

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
Dataset = Annotated[str, StringConstraints(pattern=DATASET_PATTERN)]
ProvinceCode = Annotated[str, StringConstraints(pattern=PROVINCE_PATTERN)]


class AccessError(ConfigError):
    """The access file is invalid, or the database cannot be made to match it."""


class Agency(BaseModel):
    """One agency: a login role `agency_<slug>` and what it may read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: Slug = Field(description="lowercase letters, digits and _; the role is agency_<slug>")
    name: str = Field(min_length=1, max_length=200, description="the agency's name, as a comment on its role")
    datasets: tuple[Dataset, ...] = Field(min_length=1, description="mart_<domain> (every table of it, now and "
                                          "later) or mart_<domain>.<table>")
    provinces: Literal["all"] | tuple[ProvinceCode, ...] = Field(description="2025 province codes, or all")
    pii: PiiAccess
    connection_limit: int = Field(default=5, ge=1, le=500)
    statement_timeout: str = Field(default="5min", description="e.g. 30s, 5min, 1h")

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(not ch.isprintable() for ch in value):
            raise ValueError("must be one line of printable text")
        return value.strip()

    @field_validator("provinces")
    @classmethod
    def _some_provinces(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, tuple):
            if not value:
                raise ValueError(f"list at least one 2025 province code, or write {ALL_PROVINCES}")
            return tuple(sorted(set(value)))
        return value

    @field_validator("datasets")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))

    @field_validator("statement_timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        timeout_ms(value)
        return value.strip()

    @property
    def role(self) -> str:
        return ROLE_PREFIX + self.slug

    @property
    def all_provinces(self) -> bool:
        return self.provinces == ALL_PROVINCES

    @property
    def province_list(self) -> tuple[str, ...]:
        """The scope as stored for row-level security: `*` stands for every province (and rows with none)."""
        return ("*",) if isinstance(self.provinces, str) else self.provinces

    @property
    def statement_timeout_ms(self) -> int:
        return timeout_ms(self.statement_timeout)

    def reads_table(self, schema: str, table: str) -> bool:
        return schema in self.datasets or f"{schema}.{table}" in self.datasets

    def whole_schemas(self) -> tuple[str, ...]:
        return tuple(d for d in self.datasets if "." not in d)

    def schemas(self) -> tuple[str, ...]:
        return tuple(sorted({d.split(".", 1)[0] for d in self.datasets}))


class AccessFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agencies: tuple[Agency, ...]

    @field_validator("agencies")
    @classmethod
    def _unique_slugs(cls, value: tuple[Agency, ...]) -> tuple[Agency, ...]:
        seen: set[str] = set()
        for agency in value:
            if agency.slug in seen:
                raise ValueError(f"agency slug {agency.slug!r} is declared twice")
            seen.add(agency.slug)
        return tuple(sorted(value, key=lambda a: a.slug))


def timeout_ms(value: str) -> int:
    match = TIMEOUT_PATTERN.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30s, 5min or 1h")
    ms = int(match.group(1)) * TIMEOUT_UNITS_MS[match.group(2)]
    if not 0 < ms <= MAX_TIMEOUT.total_seconds() * 1000:
        raise ValueError(f"{value!r} must be more than 0 and at most {MAX_TIMEOUT}")
    return ms


def load(path: Path, *, known_provinces: Iterable[str]) -> AccessFile:
    """Read and validate the access file; any problem is one AccessError naming the file, agency and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AccessError(f"{path}: no such access file; write one (see access/agencies.yml) or pass --file") \
            from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessError(f"{path}: cannot be read as UTF-8 text: {exc}") from None
    return parse(text, source=str(path), known_provinces=known_provinces)


def parse(text: str, *, source: str, known_provinces: Iterable[str]) -> AccessFile:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise AccessError(f"{source}{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise AccessError(f"{source}: expected a mapping with an `agencies:` list at the top")
    try:
        declared = AccessFile.model_validate(raw)
    except ValidationError as exc:
        raise AccessError(f"{source}: {_first_problem(exc, raw)}") from None
    known = frozenset(known_provinces)
    for number, agency in enumerate(raw["agencies"], start=1):
        parsed = next(a for a in declared.agencies if a.slug == agency["slug"])
        unknown = [p for p in parsed.province_list if p != "*" and p not in known]
        if unknown:
            raise AccessError(f"{source}: agency #{number} ({parsed.slug!r}): provinces: {', '.join(unknown)} "
                              f"{'is not a 2025 province code' if len(unknown) == 1 else 'are not 2025 province codes'}"
                              f" (known: {', '.join(sorted(known))})")
    return declared


def _first_problem(exc: ValidationError, raw: object) -> str:
    """One line for the first error: which agency (by position and slug), which field, what is wrong."""
    error = exc.errors()[0]
    location = list(error["loc"])
    where = []
    if location[:1] == ["agencies"] and len(location) > 1 and isinstance(location[1], int):
        index = location[1]
        agencies = raw.get("agencies") if isinstance(raw, dict) else None
        slug = agencies[index].get("slug") if isinstance(agencies, list) and index < len(agencies) \
            and isinstance(agencies[index], dict) else None
        where.append(f"agency #{index + 1}" + (f" ({slug!r})" if isinstance(slug, str) else ""))
        location = location[2:]
    if location:
        where.append(".".join(str(p) for p in location))
    message = str(error["msg"])
    if error["type"] == "string_pattern_mismatch":
        message = f"{error['input']!r} is not allowed here (it must match {error['ctx']['pattern']})"
    return (": ".join(where) + ": " if where else "") + message
