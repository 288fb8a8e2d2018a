"""Query vectors are validated alike whether one comes alone (``/search``) or in a batch."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from app.service.errors import InvalidInput
from app.service.vectors import MAX_COMPONENT, as_vector, as_vectors

DIM = 3
VALID = [
    [0.5, -1, 2],
    [1, 2, 3],
    [0.0, 0.0, 0.0],
    [1, 0, 1.0],  # ones and zeros are numbers; only JSON's true and false are not
    [MAX_COMPONENT, 0, -MAX_COMPONENT],
]
INVALID: list[tuple[Any, str]] = [
    ([1, 2], "expected dimension 3, got 2"),
    ([], "expected dimension 3, got 0"),
    ([1, "2", 3], "must be numbers"),
    ([1, None, 3], "must be numbers"),
    ([[1, 2, 3]], "expected dimension 3, got ?"),
    ([1, [2], 3], "every vector must have 3 components"),
    ([1, 2, 1e300], "finite numbers within"),
    ([1, 2, -1e17], "finite numbers within"),
    ([1.5, 2, True], "not true or false"),
    ([0, 0, False], "not true or false"),
    ([True, True, True], "must be numbers"),
]


@pytest.mark.parametrize("value", VALID)
def test_a_vector_alone_equals_a_batch_of_one(value: list[Any]) -> None:
    alone = as_vector(value, DIM)
    assert alone.dtype == np.float32 and alone.shape == (1, DIM)
    np.testing.assert_array_equal(alone, as_vectors([value], DIM, "vector"))


@pytest.mark.parametrize(("value", "message"), INVALID)
def test_a_vector_alone_is_refused_as_in_a_batch(value: Any, message: str) -> None:
    for convert in (lambda: as_vector(value, DIM), lambda: as_vectors([value], DIM, "vector")):
        with pytest.raises(InvalidInput, match=f"^vector: .*{re.escape(message)}"):
            convert()


def test_a_vector_must_be_a_list() -> None:
    with pytest.raises(InvalidInput, match="vector must be a list of 3 numbers"):
        as_vector("1,2,3", DIM)


def test_true_or_false_in_any_row_of_a_batch_is_refused() -> None:
    rows = [[0.5, 1, 2], [1, 0, 1], [3, 1, 4], [0.5, 1.0, 0.0]]
    assert as_vectors(rows, DIM, "vectors").shape == (4, DIM)
    for i in range(len(rows)):
        with_bool = [list(r) for r in rows]
        with_bool[i][1] = True
        with pytest.raises(InvalidInput, match="not true or false"):
            as_vectors(with_bool, DIM, "vectors")
