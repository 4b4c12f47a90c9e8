"""What `kho generate` writes works where it is used: dbt seeds the loader's reference sets into PostgreSQL as they
are, 2025 commune codes and leading zeros included."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from kho.build.dbt import run_dbt
from kho.config import KhoConfig
from kho.sources.reference import commune_codes, commune_codes_2025, ethnicity_names, province_codes
from kho.warehouse.connection import connect

pytestmark = pytest.mark.integration

SET_SEEDS = {"ref_province_codes": ("province_code", province_codes),
             "ref_commune_codes": ("commune_code", lambda: commune_codes() | commune_codes_2025()),
             "ref_ethnicities": ("ethnicity", ethnicity_names)}


def test_dbt_seeds_exactly_the_codes_and_names_the_loader_accepts(fresh_db_config: KhoConfig, tmp_path: Path
                                                                  ) -> None:
    wh = fresh_db_config.warehouse
    outcome = run_dbt(fresh_db_config, ["seed", "--select", *SET_SEEDS], host=wh.hosts[0], port=wh.ports[0],
                      target=tmp_path / "target")
    outcome.raise_for_failure()

    with connect(wh, autocommit=True) as conn:
        for seed, (column, members) in SET_SEEDS.items():
            types = conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_schema = 'reference' AND table_name = %s", (seed,)).fetchall()
            assert types == [(column, "text")], seed
            query = sql.SQL("SELECT {} FROM {}").format(sql.Identifier(column), sql.Identifier("reference", seed))
            stored = [row[0] for row in conn.execute(query)]
            assert len(stored) == len(set(stored)) and set(stored) == members(), seed
        new_only = commune_codes_2025() - commune_codes()
        assert new_only, "the reference data has no 2025 commune code of its own"
        found = conn.execute("SELECT count(*) FROM reference.ref_commune_codes WHERE commune_code = ANY(%s)",
                             (sorted(new_only),)).fetchone()
        assert found == (len(new_only),)
        assert conn.execute("SELECT province_code FROM reference.ref_province_codes ORDER BY 1 LIMIT 1"
                            ).fetchone() == ("01",)
