"""'More like this': search a collection with an item it already holds.

The item's stored vector is the query, so nothing is decoded or embedded again (the file may even
be gone), and the search is the ordinary one (omnibind/search.py: calibrated across modalities,
filters, ANN above the exact limit). The item itself, and hits that only name one of its own
segments, are left out of the results.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnibind.collection import ITEMS_ONLY, Collection, CollectionError, sql_string
from omnibind.hits import Hits


def item_query(collection: Collection, item_id: str) -> tuple[np.ndarray, str]:
    """(unit vector, modality) of a stored item; CollectionError naming the id when it is not an
    item of the collection (a segment id is not an item)."""
    t = collection.column("vector", "modality", where=f"id = {sql_string(item_id)} AND {ITEMS_ONLY}")
    if not t.num_rows:
        raise CollectionError(f"no item {item_id!r} in collection {collection.name!r}")
    vector = np.asarray(t.column("vector")[0].as_py(), dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / max(norm, 1e-12), str(t.column("modality")[0].as_py())


def more_like(collection: Collection, item_id: str, k: int = 10, **search_kwargs: Any) -> Hits:
    """The `k` items most like a stored one (any modality unless `modality=` says otherwise),
    itself excluded; other keyword arguments go to `omnibind.search.search` (where, exact, ...)."""
    from omnibind.search import search

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    vector, modality = item_query(collection, item_id)
    hits = search(collection, vector, k=k + 1, query_modality=modality, **search_kwargs)
    out = Hits([h for h in hits if h.id != item_id and (h.fields.get("item") or h.id) != item_id][:k])
    out.note = hits.note
    return out
