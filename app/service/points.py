"""Point writes: validate a whole batch, commit it, then apply it to the live index."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError

from app.engine.payload_index import misfit
from app.service.errors import CollectionNotFound, InvalidInput
from app.service.live import Label
from app.service.registry import Registry
from app.service.vectors import as_vectors, check_direction
from app.store import points as point_store
from app.store.seq import next_seq

MAX_ID_CHARS = 256


# Integer ids a JSON parser reads exactly as integers (longer ones become floats).
_INT_IDS = range(-(2**63), 2**64)


def exact_integer(value: Any) -> Any:
    """A float with no fraction as the integer it is (``7.0`` is 7, as JSON Schema has it),
    up to 2**53, where floats still hold every integer; any other value as given."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def external_id(value: Any, field: str) -> str:
    """Ids are strings of 1-256 chars; integers (``exact_integer``) are accepted and stored
    as decimal strings."""
    value = exact_integer(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value in _INT_IDS:
            return str(value)
        raise InvalidInput(
            f"{field}: an integer id must fit in 64 bits (JSON parsers read longer ones as "
            "floats, which lose digits): send it as a string"
        )
    if isinstance(value, str) and 1 <= len(value) <= MAX_ID_CHARS and "\x00" not in value:
        return value
    # NUL is refused because PostgreSQL text cannot hold it: ids stay portable between stores.
    raise InvalidInput(
        f"{field} must be a string of 1-{MAX_ID_CHARS} characters (no NUL) or an integer"
    )


def parse_points(points: Any, dim: int, max_points: int) -> tuple[list[str], np.ndarray, list[Any]]:
    """(ids, vectors, payloads) of a batch, the last occurrence of a repeated id winning."""
    if not isinstance(points, list) or not points:
        raise InvalidInput("points must be a non-empty list")
    if len(points) > max_points:
        raise InvalidInput(f"at most {max_points} points per batch, got {len(points)}")
    ids: list[str] = []
    payloads: list[Any] = []
    raw_vectors: list[Any] = []
    for i, p in enumerate(points):
        if not isinstance(p, dict) or "vector" not in p or "id" not in p:
            raise InvalidInput(f"points[{i}] must be an object with an id and a vector")
        unknown = set(p) - {"id", "vector", "payload"}
        if unknown:
            raise InvalidInput(f"points[{i}] has unknown fields: {sorted(unknown)}")
        payload = p.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise InvalidInput(f"points[{i}].payload must be an object")
        ids.append(external_id(p["id"], f"points[{i}].id"))
        payloads.append(payload)
        raw_vectors.append(p["vector"])
    vectors = as_vectors(raw_vectors, dim, "points[].vector")
    last = {e: i for i, e in enumerate(ids)}
    if len(last) < len(ids):
        keep = sorted(last.values())
        ids = [ids[i] for i in keep]
        payloads = [payloads[i] for i in keep]
        vectors = vectors[keep]
    return ids, vectors, payloads


def upsert(
    registry: Registry, name: str, ids: list[str], vectors: np.ndarray, payloads: list[Any]
) -> int:
    """Commit the batch atomically, then apply it here; returns the batch's write seq.

    The dimension is checked again under the lock: the batch was parsed before it, and the
    collection may have been deleted and re-created with another dimension meanwhile.
    """
    with registry.apply_lock:
        live = registry.get(name)
        check_dimension(vectors, live.record.dim)
        check_direction(vectors, live.record.metric, "points[].vector")
        reason = misfit(live.payloads.fields, payloads)
        if reason is not None:
            raise InvalidInput(f"points[].payload: {reason}")
        # The store's labels, and the index's lists: assigned once, before the transaction
        # (which holds every writer off).
        lists = live.index.lists_of(vectors)
        try:
            with registry.store.write() as session:
                seq = next_seq(session)
                internal = point_store.upsert_points(
                    session, live.record.id, seq, ids, vectors, payloads, lists
                )
        except IntegrityError:  # the collection was deleted through another replica
            raise CollectionNotFound(f"collection {name!r} does not exist") from None
        except point_store.WrongDimension as exc:  # re-created through another replica
            raise InvalidInput(str(exc)) from None
        labels: list[Label] = list(zip(ids, payloads, strict=True))
        live.apply_upsert(internal, vectors, labels, lists)
        live.changed_seq = seq
        registry.note_local_write(seq)
    return seq


def check_dimension(vectors: np.ndarray, dim: int) -> None:
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise InvalidInput(
            f"vectors have dimension {vectors.shape[-1]}, the collection has dimension {dim}"
        )


def delete(registry: Registry, name: str, ids: list[str]) -> tuple[int, int]:
    """Tombstone the points; returns (how many existed, write seq). No ids: nothing is
    written, and the seq is what this process has applied (a ``min_seq`` met already)."""
    if not ids:
        registry.get(name)  # an unknown collection is still one
        return 0, registry.applied_seq
    with registry.apply_lock:
        live = registry.get(name)
        with registry.store.write() as session:
            seq = next_seq(session)
            removed = point_store.delete_points(session, live.record.id, seq, ids)
        live.apply_remove(removed)
        live.changed_seq = seq
        registry.note_local_write(seq)
    return len(removed), seq
