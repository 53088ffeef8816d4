"""The JSON shapes of items and hits: rows with their metadata parsed and their links."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote


def with_links(d: dict[str, Any]) -> dict[str, Any]:
    base = "/v1/items/" + quote(d["id"], safe="")
    links = {"media": base + "/media"}
    if d.get("modality") in ("image", "video"):
        links["thumbnail"] = base + "/media?thumbnail=true"
    return {**d, "links": links}


def hit_json(hit: Any) -> dict[str, Any]:
    return with_links(hit.to_dict())  # to_dict parses the stored metadata JSON


def item_json(row: dict[str, Any]) -> dict[str, Any]:
    return with_links({**row, "metadata": json.loads(row.get("metadata") or "{}")})
