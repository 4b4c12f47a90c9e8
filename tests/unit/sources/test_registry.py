"""A registry is one typed value: its entities inherit its defaults, a declaration that cannot be right fails at
import naming the registry, its freshness follows its schedule, and registries from outside kho join the catalogue
through KHO_REGISTRY_MODULES."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kho.config import PROJECT_ROOT
from kho.errors import ConfigError
from kho.sources import BUILT_IN, REGISTRIES, SchemaDrift, entities_of, get_entity, registry
from kho.sources.contract import UPDATED_AT, Entity, Field
from kho.sources.registry import Freshness, Paging, Registry, catalogue, load_registry_modules, schedule_gap

DAY = dt.timedelta(days=1)


def entity(name: str = "parcels", registry_slug: str = "land", **overrides: object) -> Entity:
    return Entity(registry=registry_slug, name=name, key=("parcel_id",), cursor="updated_at",
                  fields=(Field("parcel_id", "text", required=True, pattern=r"P\d{8}"), UPDATED_AT),
                  **overrides)  # type: ignore[arg-type]


def land(*entities: Entity, **overrides: object) -> Registry:
    settings: dict[str, object] = {"slug": "land", "name": "Land registry", "agency": "Department of Agriculture",
                                   "schedule": "0 2 * * *", "entities": entities or (entity(),), **overrides}
    return Registry(**settings)  # type: ignore[arg-type]


def test_the_catalogue_is_the_four_registries_each_with_its_owner_and_schedule() -> None:
    assert REGISTRIES == BUILT_IN
    assert [(r.slug, r.schedule, r.timezone) for r in REGISTRIES] == [
        ("population", "0 1 * * *", "Asia/Ho_Chi_Minh"), ("insurance", "15 1 * * *", "Asia/Ho_Chi_Minh"),
        ("civil_status", "30 1 * * *", "Asia/Ho_Chi_Minh"), ("business", "45 1 * * *", "Asia/Ho_Chi_Minh")]
    assert registry("civil_status").agency == "Ministry of Justice (Bộ Tư pháp)"
    assert registry("population").title == "National population registry (Cơ sở dữ liệu quốc gia về dân cư)"
    assert [r.dag_id for r in REGISTRIES] == ["sync_population", "sync_insurance", "sync_civil_status",
                                              "sync_business"]


def test_entities_inherit_the_registry_s_drift_policy_and_path() -> None:
    assert {e.drift for e in entities_of("civil_status")} == {SchemaDrift.FREEZE}
    assert {e.drift for e in entities_of("business")} == {SchemaDrift.DISCARD_EXTRA}
    assert {e.drift for e in entities_of("population") + entities_of("insurance")} == {SchemaDrift.KEEP_EXTRA}
    assert get_entity("civil_status", "births").endpoint == "/civil-status/v1/births"
    assert registry("civil_status").api_slug == "civil-status"


def test_an_entity_s_own_drift_policy_wins_over_the_registry_s() -> None:
    declared = land(entity("parcels"), entity("owners", drift=SchemaDrift.KEEP_EXTRA), drift=SchemaDrift.FREEZE,
                    api_slug="dat-dai")
    assert [(e.name, e.drift, e.endpoint) for e in declared.entities] == [
        ("parcels", SchemaDrift.FREEZE, "/dat-dai/v1/parcels"),
        ("owners", SchemaDrift.KEEP_EXTRA, "/dat-dai/v1/owners")]


def test_a_registry_module_rebinds_its_names_to_the_completed_entities() -> None:
    from kho.sources import civil_status

    assert civil_status.BIRTHS is get_entity("civil_status", "births")
    assert civil_status.BIRTHS.drift is SchemaDrift.FREEZE


def test_an_entity_outside_any_registry_keeps_unknown_fields() -> None:
    assert entity().drift is None and entity().endpoint == "/land/v1/parcels"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"slug": "Land"}, "registry slug 'Land'"),
    ({"schedule": "nightly"}, "schedule 'nightly' is not a five-field cron expression"),
    ({"schedule": "0 2 * *"}, "five-field"),
    ({"timezone": "Asia/Hanoi_City"}, "unknown timezone 'Asia/Hanoi_City'"),
    ({"api_slug": "Đất đai"}, "api_slug 'Đất đai'"),
    ({"entities": ()}, "no entities"),
    ({"entities": (entity(), entity())}, "entity 'parcels' declared twice"),
    ({"entities": (entity(registry_slug="population"),)}, "entity 'parcels' says it belongs to registry 'population'"),
    ({"entities": (entity("p" * 60),)}, "longer than PostgreSQL's 63 characters"),
])
def test_a_registry_that_cannot_be_right_fails_at_declaration_naming_it(overrides: dict[str, object],
                                                                         message: str) -> None:
    with pytest.raises(ConfigError, match="registry") as caught:
        land(**overrides)
    assert message in str(caught.value)


def test_paging_and_freshness_must_make_sense() -> None:
    with pytest.raises(ConfigError, match="both must be >= 1"):
        Paging(page_size=0)
    with pytest.raises(ConfigError, match="before the error"):
        Freshness(warn_after=2 * DAY, error_after=DAY)


@pytest.mark.parametrize(("schedule", "gap"), [
    ("0 1 * * *", DAY), ("*/15 * * * *", dt.timedelta(minutes=15)), ("0 3 * * 1-5", 3 * DAY),
    ("0 6,18 * * *", dt.timedelta(hours=12)), ("30 2 1 * *", 31 * DAY),
])
def test_the_longest_gap_between_runs_is_read_from_the_cron_schedule(schedule: str, gap: dt.timedelta) -> None:
    assert schedule_gap(schedule) == gap


def test_freshness_is_derived_from_the_schedule_unless_given() -> None:
    nightly = land()
    assert (nightly.source_freshness.warn_after, nightly.source_freshness.error_after) == (2 * DAY, 7 * DAY)
    assert nightly.source_freshness.dbt() == {"warn_after": {"count": 2, "period": "day"},
                                              "error_after": {"count": 7, "period": "day"}}
    hourly = land(schedule="5 * * * *")
    assert hourly.source_freshness.dbt() == {"warn_after": {"count": 2, "period": "hour"},
                                             "error_after": {"count": 7, "period": "hour"}}
    given = Freshness(dt.timedelta(hours=36), dt.timedelta(days=3))
    assert dataclasses.replace(nightly, freshness=given).source_freshness.dbt() == {
        "warn_after": {"count": 36, "period": "hour"}, "error_after": {"count": 3, "period": "day"}}


def test_an_unknown_registry_lists_the_known_slugs() -> None:
    with pytest.raises(ConfigError, match="unknown registry 'tax'; known registries: population, insurance, "
                                          "civil_status, business"):
        registry("tax")
    with pytest.raises(ConfigError, match="has no entity 'pets'; its entities: citizens, households"):
        registry("population").entity("pets")


def test_a_second_registry_with_a_taken_slug_is_refused() -> None:
    with pytest.raises(ConfigError, match="registry population is declared twice"):
        catalogue((*BUILT_IN, land(entity(registry_slug="population"), slug="population")))


# --- KHO_REGISTRY_MODULES ----------------------------------------------------------------------------------------

@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for registry modules written by a test; they are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("kho_test_"):
            del sys.modules[name]


def write_module(where: Path, name: str, body: str) -> str:
    (where / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return name


def test_a_module_naming_a_registry_is_loaded(modules: Path) -> None:
    name = write_module(modules, "kho_test_land", """
        from kho.sources.contract import UPDATED_AT, Entity, Field
        from kho.sources.registry import Registry

        PARCELS = Entity(registry="land", name="parcels", key=("parcel_id",), cursor="updated_at",
                         fields=(Field("parcel_id", "text", required=True, pattern=r"P\\d{8}"), UPDATED_AT))
        REGISTRY = Registry(slug="land", name="Land registry", agency="Department of Agriculture",
                            schedule="0 2 * * *", entities=(PARCELS,))
    """)
    (found,) = load_registry_modules(f" {name} ,")
    assert (found.slug, [e.qualified_name for e in found.entities]) == ("land", ["land.parcels"])


@pytest.mark.parametrize(("body", "message"), [
    (None, "KHO_REGISTRY_MODULES: cannot import 'kho_test_nowhere' (No module named 'kho_test_nowhere'); give "
           "importable module names"),
    ("REGISTRY = 'land'\n", "KHO_REGISTRY_MODULES: module 'kho_test_nowhere' defines no REGISTRY = Registry(...) "
                            "(found str)"),
    ("from kho.sources.registry import Registry\nREGISTRY = Registry(slug='land', name='', agency='', "
     "schedule='whenever', entities=())\n", "KHO_REGISTRY_MODULES: kho_test_nowhere: registry land is inconsistent"),
])
def test_a_bad_registry_module_is_a_one_line_config_error(modules: Path, body: str | None, message: str) -> None:
    if body is not None:
        write_module(modules, "kho_test_nowhere", body)
    with pytest.raises(ConfigError) as caught:
        load_registry_modules("kho_test_nowhere")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_bad_module_setting_stops_the_kho_command_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "kho.cli", "load", "population", "citizens", "x.csv"],
                          env={"PATH": "/usr/bin:/bin", "KHO_HOME": "/nonexistent/kho",
                               "KHO_REGISTRY_MODULES": "agency.registries.nowhere"},
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("kho: error: KHO_REGISTRY_MODULES: cannot import 'agency.registries.nowhere'")
    assert done.stderr.count("\n") == 1, done.stderr
