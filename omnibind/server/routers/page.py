"""The search page (plain HTML + JS + CSS, no build step, no CDN, nothing inline: the CSP in
`server/headers.py` allows only this server's own scripts and styles) and the health check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from omnibind.server.deps import State

STATIC = Path(__file__).resolve().parent.parent / "static"  # mounted at /static by create_app
router = APIRouter()


@router.get("/healthz", tags=["meta"])
def healthz(state: State) -> dict[str, Any]:
    state.refresh()
    coll = state.collection
    return {"status": "ok", "collection": coll.name, "items": len(coll), "space": coll.space.name,
            "served": state.names()}


@router.get("/", include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text("utf-8"))
