"""NFC normalisation that only rewrites the strings that need it.

Normalising every name to NFC costs Arrow's utf8proc a full pass with a new string per row (0.4 s per million
names), yet registry text is almost always NFC already. A string is certainly NFC when it contains no character
that NFC could change or combine — Unicode's NFC_Quick_Check=Yes for every character, plus no combining marks to
reorder. `NFC_UNSTABLE_RANGES` lists the other characters (decomposed under NFC, composing with what precedes
them, with a non-zero combining class, or unassigned in the Unicode version Python knows); one RE2 scan finds the
rows that contain any, and only those are normalised.

The table is generated from Python's `unicodedata` into `_nfc_table.py` by `kho generate`; `kho generate --check`
(CI) renders it again and fails if it is stale.
"""

from __future__ import annotations

import functools

import pyarrow as pa
import pyarrow.compute as pc

from kho.sources._nfc_table import NFC_UNSTABLE_RANGES


@functools.cache
def _unstable_class() -> str:
    """An RE2 character class of `NFC_UNSTABLE_RANGES`."""
    parts = (f"\\x{{{low:X}}}" if low == high else f"\\x{{{low:X}}}-\\x{{{high:X}}}"
             for low, high in NFC_UNSTABLE_RANGES)
    return "[" + "".join(parts) + "]"


def normalize_nfc(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """`col` in NFC; rows that are NFC already are kept as they are (same result as `pc.utf8_normalize`)."""
    needs = pc.fill_null(pc.match_substring_regex(col, _unstable_class()), False)
    if not pc.any(needs).as_py():
        return col
    values = col.combine_chunks()
    mask = needs.combine_chunks()
    fixed = pc.utf8_normalize(values.filter(mask), form="NFC")
    return pa.chunked_array([pc.replace_with_mask(values, mask, fixed)])
