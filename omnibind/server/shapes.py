"""The JSON shapes of items and hits: rows with their metadata parsed and their links (into the
collection they came from: `items` is its item path prefix)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote


ITEMS = "/v1/items/"  # the default collection's items; another's: /v1/collections/{name}/items/ (ServerState.links_base)


def with_links(d: dict[str, Any], items: str = ITEMS) -> dict[str, Any]:
    base = items + quote(d["id"], safe="")
    links = {"media": base + "/media"}
    if d.get("modality") in ("image", "video"):
        links["thumbnail"] = base + "/media?thumbnail=true"
    return {**d, "links": links}


def hit_json(hit: Any, items: str = ITEMS) -> dict[str, Any]:
    return with_links(hit.to_dict(), items)  # to_dict parses the stored metadata JSON


def item_json(row: dict[str, Any], items: str = ITEMS) -> dict[str, Any]:
    return with_links({**row, "metadata": json.loads(row.get("metadata") or "{}")}, items)
