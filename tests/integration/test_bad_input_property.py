"""Loaded or quarantined, never lost, never a crash: whatever lines an export file holds, loading it into the real
warehouse either accounts for every non-blank data line (a raw row or a quarantine row of the batch, each once) or
refuses the file with one line. The files are drawn as in `tests.unit.extract.test_bad_lines_property`, with
valid citizens as the good lines and lines past the 1 MiB a line may be as the long ones.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kho.config import KhoConfig
from kho.errors import KhoError
from kho.extract.files import ExportFile, iter_blocks
from kho.load.pipeline import load_file
from kho.sources.population import CITIZENS
from kho.warehouse.connection import connect
from tests.unit.extract.test_bad_lines_property import ExportSpec, check_accounting, export_specs, outcome

pytestmark = pytest.mark.integration

MIB = 1 << 20
NAMES = st.builds(str.__add__, st.sampled_from(["Nguyễn", "Trần", "Lê", "Đỗ"]),
                  st.text(" Thị Văn Đức Hương Ngọc Ánh ,'\"-", max_size=20))
"""Names the contract accepts (a good line must load), quotes and commas included."""
_index = itertools.count(1)
"""Citizens are numbered across examples: every key is new to the table, so each example's rows are its own."""


def fetch(config: KhoConfig, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


@settings(deadline=None, max_examples=25, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=export_specs(names=lambda _: NAMES, next_index=lambda: next(_index),
                         long_bytes=st.integers(MIB + 1, MIB + 2000), min_lines=4))
def test_every_line_is_loaded_or_quarantined_never_lost(fresh_db_config: KhoConfig,
                                                        tmp_path_factory: pytest.TempPathFactory,
                                                        spec: ExportSpec) -> None:
    path = spec.write(tmp_path_factory.mktemp("export"))
    try:
        entry = load_file(fresh_db_config, CITIZENS, path)
    except KhoError as refused:  # anything else fails the test, with its traceback
        assert "\n" not in str(refused), refused
        event(f"refused: {type(refused).__name__}")
        return
    event(f"loaded, {'some' if entry.rows_rejected else 'none'} quarantined")
    # What the file holds, line by line, as the reader hands it on (the unit property checks the reader itself
    # against the file as written): every non-blank line in one record or one defect.
    read = outcome(iter_blocks(ExportFile.of(path), CITIZENS))
    check_accounting(spec.fmt, spec.data(), spec.good_lines(), read)
    batch = (entry.batch_id,)
    loaded = fetch(fresh_db_config, "SELECT cccd FROM raw.population__citizens WHERE _batch_id = %s", batch)
    held = [line for (line,) in fetch(fresh_db_config, "SELECT line_number FROM kho.quarantine WHERE batch_id = %s",
                                      batch)]
    assert len(loaded) + len(held) == entry.rows_read == len(read.records) + len(read.defects)
    assert len(set(held)) == len(held) and set(read.defects) <= set(held) <= set(read.records) | set(read.defects)
    good = {spec.first_line + at: record for at, (record, _) in spec.good_lines().items()}
    assert not set(held) & set(good)
    assert {r["cccd"] for r in good.values()} <= {cccd for (cccd,) in loaded}
