"""Point writes (app/service/points.py): a batch reaches the store only with the dimension of
the collection it is written to, checked under the apply lock."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from app.service.errors import InvalidInput, PointNotFound
from app.service.points import parse_points, upsert
from tests.service.services import start_service


def test_a_batch_parsed_before_the_collection_was_recreated_with_another_dimension_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    service = start_service(database_url, tmp_path)
    try:
        create = partial(
            service.create_collection,
            name="docs",
            metric="ip",
            nlist=None,
            algorithm="kmeans",
            default_nprobe=None,
        )
        create(dim=8)
        ids, vectors, payloads = parse_points([{"id": "a", "vector": [1.0] * 8}], 8, 10)
        service.delete_collection("docs")
        create(dim=4)  # between the parse and the write, as another request may do
        with pytest.raises(InvalidInput, match="dimension 8"):
            upsert(service.registry, "docs", ids, vectors, payloads)
        assert service.get_collection("docs")["count"] == 0
        with pytest.raises(PointNotFound):
            service.get_point("docs", "a")
    finally:
        service.stop()
