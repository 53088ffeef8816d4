"""`POST /v1/embed` and `POST /v1/classify`: texts (JSON) or uploaded files (multipart)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from omnibind.classify import classify as run_classify
from omnibind.server.bodies import ClassifyBody, EmbedBody, json_or_form, parse, read_upload, validate
from omnibind.server.deps import State
from omnibind.server.errors import ApiError

router = APIRouter()


@router.post("/v1/embed", tags=["embed"], openapi_extra=json_or_form(EmbedBody))
async def embed(request: Request, state: State) -> dict[str, Any]:
    """Vectors for texts (JSON `texts`) or uploaded files (multipart `file`, repeatable)."""
    fields, files = await parse(request, state.settings)
    items = [await read_upload(f, state.space.limits) for f in files]
    texts = fields.get("texts") or []
    texts = [texts] if isinstance(texts, str) else texts
    if not files:
        body = validate(EmbedBody, fields)
        texts, dim = body.texts, body.dim
    else:
        dim = int(fields["dim"]) if fields.get("dim") else None
    _check_count(len(texts), state.settings.max_texts)
    vectors = await state.run_model(state.space.embed, items + list(texts), dim=dim)
    sources = [f.filename for f in files] + ["<text>"] * len(texts)
    modalities = [getattr(x, "modality", "text") for x in items] + ["text"] * len(texts)
    return {"dim": int(vectors.shape[1]), "items": [{"source": s, "modality": m, "vector": v.tolist()}
                                                    for s, m, v in zip(sources, modalities, vectors)]}


@router.post("/v1/classify", tags=["classify"], openapi_extra=json_or_form(ClassifyBody))
async def classify(request: Request, state: State) -> dict[str, Any]:
    """Zero-shot probabilities over `labels` for texts (JSON) or files (multipart, labels='a,b,c')."""
    fields, files = await parse(request, state.settings)
    items = [await read_upload(f, state.space.limits) for f in files]
    if files:
        labels = [x.strip() for x in str(fields.get("labels", "")).split(",") if x.strip()]
        if len(labels) < 2:
            raise ApiError(422, "give at least two comma-separated labels in the 'labels' field")
        inputs: list[Any] = items
    else:
        body = validate(ClassifyBody, fields)
        labels, inputs = body.labels, list(body.texts)
        _check_count(len(inputs), state.settings.max_texts)
    results = await state.run_model(run_classify, state.space, inputs, labels)
    names = [f.filename for f in files] if files else ["<text>"] * len(inputs)
    return {"results": [{**r.to_dict(), "source": n} for r, n in zip(results, names)]}


def _check_count(n: int, most: int) -> None:
    if n > most:
        raise ApiError(413, f"at most {most} texts per request")
