"""Paged registry API client: follows `next_cursor` from an `updated_since` watermark, yields Arrow tables.

Every value is handed on as text (the wire form); typing and checking belong to the contract check in `load`,
so a malformed value is quarantined with its reason instead of failing the whole extraction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pyarrow as pa

from kho.errors import ExtractError
from kho.sources.contract import Entity

MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ApiSource:
    """Where one registry's API lives. Credentials (issue 3) will come from the environment, not from here."""

    base_url: str
    page_size: int = 500
    timeout_s: float = 30.0


def iter_pages(source: ApiSource, entity: Entity, since: dt.datetime | None = None) -> Iterator[pa.Table]:
    """Yield one all-text Arrow table per page, in the registry's stable (cursor, key) order."""
    if not 1 <= source.page_size <= MAX_PAGE_SIZE:
        raise ExtractError(f"page_size {source.page_size} is outside 1..{MAX_PAGE_SIZE}")
    params: dict[str, str | int] = {"page_size": source.page_size}
    if since is not None:
        params["updated_since"] = since.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    url = source.base_url.rstrip("/") + entity.endpoint
    with httpx.Client(timeout=source.timeout_s) as client:
        while True:
            body = _get_json(client, url, params, entity)
            records = body.get("data")
            if not isinstance(records, list):
                raise ExtractError(f"{entity.qualified_name}: {url} answered without a `data` list")
            if records:
                yield records_to_table(records)
            cursor = body.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor


def _get_json(client: httpx.Client, url: str, params: dict[str, str | int], entity: Entity) -> dict:
    try:
        response = client.get(url, params=params)
    except httpx.HTTPError as exc:
        raise ExtractError(f"{entity.qualified_name}: cannot reach {url}: {exc}. Is the registry up?") from exc
    if response.status_code != 200:
        try:
            detail = response.json().get("message", response.text)
        except ValueError:
            detail = response.text[:200]
        raise ExtractError(f"{entity.qualified_name}: {url} answered {response.status_code}: {detail}")
    try:
        body = response.json()
    except ValueError as exc:
        raise ExtractError(f"{entity.qualified_name}: {url} answered with invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ExtractError(f"{entity.qualified_name}: {url} answered JSON that is not an object")
    return body


def records_to_table(records: list[dict]) -> pa.Table:
    """JSON records → an Arrow table whose columns are all text (nested values as JSON text)."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {}
    for name in names:
        values = [r.get(name) for r in records]
        columns[name] = pa.array([_as_text(v) for v in values], pa.string())
    return pa.table(columns)


def _as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)
