"""`kho generate` writes everything derived from kho.sources, and `kho generate --check` (CI) fails when a committed
generated file differs: hand-edited, missing, or left behind by an entity that no longer exists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kho import generate
from kho.cli import main
from kho.config import PROJECT_ROOT
from kho.sources import REGISTRIES

ARTIFACTS = generate.artifacts()
PATHS = tuple(a.path for a in ARTIFACTS)


def copy_generated(root: Path) -> Path:
    """The repository's generated files, copied under `root` (the doc with its hand-written part)."""
    for path in PATHS:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / path, root / path)
    return root


def check(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """`kho generate --check --out root`: exit code, the files it listed, what it said on stderr."""
    code = main(["generate", "--check", "--out", str(root)])
    out, err = capsys.readouterr()
    listed = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    return code, listed, err


def test_the_committed_generated_files_are_what_kho_sources_gives() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KHO_REGISTRY_MODULES"}
    done = subprocess.run([sys.executable, "-m", "kho.cli", "generate", "--check"], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}"
    assert f"all {len(ARTIFACTS)} generated files" in done.stdout


def test_every_kind_of_generated_file_is_in_the_list() -> None:
    kinds = {p.parts[0] if p.parts[0] != "dbt_project" else "/".join(p.parts[:2]) for p in PATHS}
    assert kinds == {"expectations", "dbt_project/models", "dbt_project/seeds", "plugins", "docs", "deploy"}
    assert len(set(PATHS)) == len(PATHS), "two artifacts write one file"


EDITS = {
    "expectations/suites/raw/population__citizens.json": ('"cccd"', '"ccd"'),
    "expectations/great_expectations.yml": ("table_name: population__citizens", "table_name: citizens"),
    "expectations/checkpoints/raw.population__citizens.json": ('"partial_unexpected_count": 0',
                                                                '"partial_unexpected_count": 20'),
    "expectations/suites/mart_population/golden_citizens.json": ('"id": "', '"id": "0'),
    "dbt_project/models/staging/insurance/_insurance__sources.yml": ("period: day", "period: hour"),
    "dbt_project/models/staging/business/stg_business__branches.sql": ("from source", "from source where false"),
    "dbt_project/seeds/ref_provinces_2025.csv": ("Thành phố Hà Nội", "Thanh pho Ha Noi"),
    "plugins/kho/sources/_nfc_table.py": ("(0x0300, 0x034E)", "(0x0300, 0x034F)"),
    "docs/registries.md": ("| `cccd` |", "| `cccd_number` |"),
    "deploy/patroni/patroni.yml": ("ttl: 20", "ttl: 30"),
}


@pytest.mark.parametrize("edited", sorted(EDITS))
def test_check_fails_on_a_hand_edited_generated_file_and_names_only_it(
        edited: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = copy_generated(tmp_path)
    assert check(root, capsys)[0] == 0
    old, new = EDITS[edited]
    text = (root / edited).read_text(encoding="utf-8")
    assert old in text
    (root / edited).write_text(text.replace(old, new, 1), encoding="utf-8")
    before = {p: (root / p).read_bytes() for p in PATHS}

    code, listed, err = check(root, capsys)

    assert code == 1
    assert listed == [f"{edited} (differs)"]
    assert len(err.strip().splitlines()) == 1 and "run `kho generate`" in err
    assert {p: (root / p).read_bytes() for p in PATHS} == before, "--check wrote a file"


def test_generate_rewrites_the_edited_file_and_nothing_else(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = copy_generated(tmp_path)
    edited = root / "dbt_project" / "models" / "staging" / "population" / "_population__models.yml"
    edited.write_text(edited.read_text(encoding="utf-8") + "# a note\n", encoding="utf-8")

    assert main(["generate", "--out", str(root)]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == ["wrote dbt_project/models/staging/population/_population__models.yml"]
    assert edited.read_bytes() == (PROJECT_ROOT / edited.relative_to(root)).read_bytes()
    assert check(root, capsys)[0] == 0


def test_an_edit_to_the_hand_written_part_of_the_doc_is_not_stale(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = copy_generated(tmp_path)
    doc = root / "docs" / "registries.md"
    doc.write_text(doc.read_text(encoding="utf-8").replace("# Registry APIs", "# The registry APIs", 1),
                   encoding="utf-8")
    assert check(root, capsys)[:2] == (0, [])


def test_a_file_no_entity_generates_any_more_is_listed_and_removed(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = copy_generated(tmp_path)
    staging = root / "dbt_project" / "models" / "staging"
    suites = root / "expectations" / "suites" / "raw"
    checkpoints = root / "expectations" / "checkpoints"
    left = [suites / "population__pets.json", staging / "population" / "stg_population__pets.sql",
            checkpoints / "raw.population__pets.json"]
    shutil.copyfile(suites / "population__citizens.json", left[0])
    shutil.copyfile(staging / "population" / "stg_population__citizens.sql", left[1])
    shutil.copyfile(checkpoints / "raw.population__citizens.json", left[2])
    hand_written = [suites / "population__by_hand.json", staging / "kho" / "stg_kho__ledger.sql",
                    staging / "kho" / "_kho__sources.yml"]
    for path in hand_written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("-- written by hand: select 1\n", encoding="utf-8")

    assert check(root, capsys)[:2] == (1, ["expectations/suites/raw/population__pets.json (orphan)",
                                           "dbt_project/models/staging/population/stg_population__pets.sql (orphan)",
                                           "expectations/checkpoints/raw.population__pets.json (orphan)"])
    assert main(["generate", "--out", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == ["removed expectations/suites/raw/population__pets.json",
                                                        "removed dbt_project/models/staging/population/"
                                                        "stg_population__pets.sql",
                                                        "removed expectations/checkpoints/raw.population__pets.json"]
    assert not any(p.exists() for p in left) and all(p.exists() for p in hand_written)


def test_an_empty_root_lacks_every_file_and_generate_fills_it(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, listed, _ = check(tmp_path, capsys)
    assert code == 1
    assert sorted(listed) == sorted(f"{p} (missing)" for p in PATHS)

    assert main(["generate", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert check(tmp_path, capsys)[:2] == (0, [])
    assert {p: (tmp_path / p).read_bytes() for p in PATHS} == {p: (PROJECT_ROOT / p).read_bytes() for p in PATHS}


def test_the_registries_doc_says_what_each_registry_object_says() -> None:
    doc = (PROJECT_ROOT / "docs" / "registries.md").read_text(encoding="utf-8")
    for registry in REGISTRIES:
        section = doc.split(f"### Registry `{registry.slug}`\n", 1)[1].split("\n#### ", 1)[0]
        days = registry.source_freshness.warn_after.days, registry.source_freshness.error_after.days
        assert f"Owner: {registry.agency}." in section
        assert f"`{registry.dag_id}` at `{registry.schedule}` (cron, {registry.timezone})" in section
        assert f"pages of {registry.paging.page_size} records, {registry.paging.pages_per_batch} pages" in section
        assert f"a warning after {days[0]} days, an error after {days[1]} days" in section
        assert f"(schema drift): `{registry.drift.value}`" in section


def test_a_doc_that_lost_its_markers_is_one_line_naming_it(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = copy_generated(tmp_path)
    doc = root / "docs" / "registries.md"
    doc.write_text("# Registries\n\nNothing generated here.\n", encoding="utf-8")

    assert main(["generate", "--check", "--out", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kho: error: docs/registries.md: ") and "BEGIN generated" in err
    assert len(err.strip().splitlines()) == 1


def test_generating_where_nothing_can_be_written_is_one_line(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n", encoding="utf-8")

    assert main(["generate", "--out", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kho: error: cannot write ") and len(err.strip().splitlines()) == 1
