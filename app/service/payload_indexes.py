"""Declared payload indexes: checked, stored, then applied to the live collection."""

from __future__ import annotations

from typing import Any

from app.engine.payload_index import declared_fields, misfit
from app.service.errors import CollectionNotFound, InvalidInput
from app.service.registry import Registry
from app.store.collections import set_payload_indexes


def checked(fields: Any) -> dict[str, str]:
    """``{key: type}`` as declared, or InvalidInput saying which key or type is wrong."""
    if not isinstance(fields, dict):
        raise InvalidInput("payload_indexes must be an object of key: type")
    try:
        return {key: str(kind) for key, kind in declared_fields(fields).items()}
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def declare(registry: Registry, name: str, fields: Any) -> int:
    """Replace the collection's declared indexes; returns the write seq.

    The live record is left to the catch-up, which then sees the new seq and syncs the
    whole row: replacing it here could hide an unapplied write of another replica.
    """
    wanted = checked(fields)
    with registry.apply_lock:
        live = registry.get(name)
        held = (payload for _, payload in live.labels.values())
        reason = misfit(declared_fields(wanted), held)
        if reason is not None:
            raise InvalidInput(f"{reason}: declare the type its payloads hold")
        seq = set_payload_indexes(registry.store, name, wanted)
        if seq is None:
            raise CollectionNotFound(f"collection {name!r} does not exist")
        live.declare_payload_indexes(wanted)
        registry.note_local_write(seq)
    return seq
