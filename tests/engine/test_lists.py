"""Lists reserved for their entries take them without moving."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from app.engine.lists import reserve

DIM = 8


def _list_address(ivf: faiss.IndexIVF, list_no: int) -> int:
    codes = faiss.rev_swig_ptr(ivf.invlists.get_codes(list_no), ivf.code_size)
    return int(codes.ctypes.data)


def _append_in_tens(ivf: faiss.IndexIVF, n: int) -> list[int]:
    """Appends ``n`` entries to list 0, ten at a time; the list's address after each."""
    addresses = []
    for start in range(0, n, 10):
        ids = np.arange(start, start + 10, dtype=np.int64)
        codes = np.zeros((10, ivf.code_size), np.uint8)
        ivf.invlists.add_entries(0, 10, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        addresses.append(_list_address(ivf, 0))
    return addresses


@pytest.mark.parametrize("reserved", [True, False])
def test_a_reserved_list_takes_its_entries_where_it_is(reserved: bool) -> None:
    ivf = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatL2(DIM), DIM, 4, faiss.ScalarQuantizer.QT_8bit
    )
    if reserved:
        reserve(ivf, np.array([200, 0, 0, 0]))  # 200 entries for list 0
    addresses = _append_in_tens(ivf, 200)
    assert ivf.invlists.list_size(0) == 200
    # Appended, a list moves as it grows; reserved, it never does.
    assert (len(set(addresses)) == 1) is reserved
