"""Point writes (app/service/points.py): a batch reaches the store only with the dimension of
the collection it is written to, checked under the apply lock, and labelled with the list
the index puts each point in."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from app.engine import lists as lists_module
from app.service.errors import InvalidInput, PointNotFound
from app.service.points import parse_points, upsert
from app.store.models import Point
from tests.service.services import start_service
from worker.build import run_build


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


def test_an_upsert_labels_each_point_with_its_list_in_the_index(
    database_url: str, tmp_path: Path
) -> None:
    """The store's label (what a shard replica reads by) names the list the API's own index
    put the point in, under the clustering it holds; flat, there is no label."""
    rng = np.random.default_rng(5)
    service = start_service(database_url, tmp_path)
    try:
        service.create_collection(
            name="docs", dim=8, metric="l2", nlist=4, algorithm="kmeans", default_nprobe=2
        )
        flat = [{"id": f"f{i}", "vector": v.tolist()} for i, v in enumerate(rng.random((50, 8)))]
        service.index_points("docs", flat)
        run_build(service.store, "docs", {}, lambda _: None)
        service.registry.catch_up()
        live = service.registry.get("docs")
        assert live.clustering_version == 1
        vectors = rng.standard_normal((30, 8)).astype(np.float32)
        service.index_points(
            "docs", [{"id": f"p{i}", "vector": v.tolist()} for i, v in enumerate(vectors)]
        )
        with service.store.read() as session:
            rows = session.execute(
                select(Point.id, Point.external_id, Point.list_version, Point.list_no)
            ).all()
        held = {
            int(pid): list_no
            for list_no in range(4)
            for pid in lists_module.read_list(live.index._state.ivf, list_no)[0].tolist()
        }
        for pid, ext, version, list_no in rows:
            if ext.startswith("f"):
                assert (version, list_no) == (None, None)
            else:
                assert (version, list_no) == (1, held[pid])
    finally:
        service.stop()
