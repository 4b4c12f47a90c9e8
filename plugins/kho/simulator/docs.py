"""The entity reference of docs/registries.md, rendered from `kho.sources` so the doc cannot drift from the code.

`kho generate` rewrites the part of docs/registries.md between the markers; `kho generate --check` (CI) fails
while the doc is out of date.
"""

from __future__ import annotations

from collections.abc import Sequence

from kho.sources.bounds import CLOCK_SKEW
from kho.sources.contract import Entity, Field, SchemaDrift
from kho.sources.registry import Registry

BEGIN = "<!-- BEGIN generated entity reference: kho generate -->"
END = "<!-- END generated entity reference -->"
_WIRE_FORM = {
    "text": "text",
    "date": "date `YYYY-MM-DD` (CSV: `dd/mm/yyyy`)",
    "timestamptz": "timestamp `YYYY-MM-DDTHH:MM:SSZ`",
    "integer": "integer as text",
    "numeric": "decimal as text",
    "boolean": "`true`/`false`",
}

_DRIFT = {
    SchemaDrift.KEEP_EXTRA: "kept in the raw table's `_extra` jsonb and reported in the ledger",
    SchemaDrift.DISCARD_EXTRA: "dropped, and reported in the ledger",
    SchemaDrift.FREEZE: "the batch is refused",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rules(field: Field, *, cursor: bool = False) -> str:
    rules = ["required" if field.required else "optional"]
    if field.pattern is not None:
        rules.append(f"matches `{field.pattern}`")
    if field.allowed is not None:
        rules.append("one of " + ", ".join(f"`{v}`" for v in sorted(field.allowed)))
    if field.reference is not None:
        rules.append(f"in reference set `{field.reference}`")
    rules += _bounds(field, cursor=cursor)
    if field.normalise_nfc:
        rules.append("normalised to NFC")
    return "; ".join(rules)


def _bounds(field: Field, *, cursor: bool) -> list[str]:
    """Length, range and date bounds, as `kho.sources.contract.check_table` applies them."""
    bounds = [f"at most {field.max_length} characters"] if field.max_length is not None else []
    if field.minimum is not None:
        bounds.append(f"{'>' if field.minimum_exclusive else '>='} {field.minimum:g}")
    if field.maximum is not None:
        bounds.append(f"<= {field.maximum:g}")
    if field.type in ("date", "timestamptz"):
        bounds.append(f"from {field.floor.isoformat()}")
    if field.days_after_update == 0:
        bounds.append("not after `updated_at`")
    elif field.days_after_update is not None:
        bounds.append(f"at most {field.days_after_update} days after `updated_at`")
    if cursor and field.type == "timestamptz":
        bounds.append(f"at most {CLOCK_SKEW.days} day after the check's clock")
    return bounds


def _drift(policy: SchemaDrift) -> str:
    return f"`{policy.value}` ({_DRIFT[policy]})"


def _period(span: dict[str, int | str]) -> str:
    count = span["count"]
    return f"{count} {span['period']}{'' if count == 1 else 's'}"


def render_registry(registry: Registry) -> str:
    """What the registry object says beyond its entities: owner, schedule, freshness, paging, drift, settings."""
    freshness = registry.source_freshness.dbt()
    return "\n".join([
        f"### Registry `{registry.slug}`",
        "",
        f"{registry.title}.{' ' + registry.description if registry.description else ''}",
        "",
        f"- Owner: {registry.agency}.",
        f"- Synced by the DAG `{registry.dag_id}` at `{registry.schedule}` (cron, {registry.timezone}); pages of "
        f"{registry.paging.page_size} records, {registry.paging.pages_per_batch} pages to a committed batch.",
        f"- Source freshness (dbt, on `_loaded_at`): a warning after {_period(freshness['warn_after'])}, an error "
        f"after {_period(freshness['error_after'])}.",
        f"- Fields the contract does not know (schema drift): {_drift(registry.drift)}, unless an entity below "
        "says otherwise.",
        f"- Reached through the settings `{registry.settings_prefix}*` (§1), under `/{registry.api_slug}/v1/`.",
        "",
    ])


def render_entity(entity: Entity, registry: Registry | None = None) -> str:
    drift = "" if entity.drift is None or (registry is not None and entity.drift == registry.drift) else (
        f" Fields the contract does not know: {_drift(entity.drift)}.")
    lines = [
        f"#### `{entity.qualified_name}` — `GET {entity.endpoint}`",
        "",
        *([entity.description, ""] if entity.description else []),
        f"Key: {', '.join(f'`{k}`' for k in entity.key)}. Cursor: `{entity.cursor}`. "
        f"Raw table: `raw.{entity.raw_table}`. Export files: `{entity.raw_table}__day<NNN>.<csv|jsonl>[.gz]`.{drift}",
        "",
        "| field | wire form | rules | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{f.name}` | {_WIRE_FORM[f.type]} | {_cell(_rules(f, cursor=f.name == entity.cursor))} | "
              f"{_cell(f.description)} |" for f in entity.fields]
    if entity.checks:
        lines += ["", "Row checks (several fields together):", ""]
        lines += [f"- `{c.name}` ({c.code}): {c.message}" for c in entity.checks]
    return "\n".join(lines)


def render(registries: Sequence[Registry]) -> str:
    """The generated section: one heading per registry, one table per entity, in catalogue order."""
    parts = [BEGIN, ""]
    for registry in registries:
        parts.append(render_registry(registry))
        parts += [render_entity(e, registry) + "\n" for e in registry.entities]
    parts.append(END)
    return "\n".join(parts)


def updated(doc: str, registries: Sequence[Registry]) -> str:
    """`doc` with its generated section replaced by the current catalogue's."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the doc has no generated section: add the lines {BEGIN!r} and {END!r}")
    return doc[:start] + render(registries) + doc[end + len(END):]
