"""`POST /v1/embed` and `POST /v1/classify`: texts (JSON) or uploaded files (multipart).

Sizes are checked before any work (`server/budget.py`); the model work runs through the gate
(`server/gate.py`) in small locked chunks, so searches are answered in between; a request that
decoded a lot gives its memory back once answered."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request

from omnibind.classify import classify as run_classify
from omnibind.server.bodies import (ClassifyBody, ClassifyForm, EmbedBody, EmbedForm, form_limits, json_or_form,
                                    parse, read_uploads, validate)
from omnibind.server.budget import Budget, release_memory
from omnibind.server.deps import CallerDep, State
from omnibind.server.errors import ApiError
from omnibind.server.gate import Job, MeteredSpace

router = APIRouter()


@router.post("/v1/embed", tags=["embed"], openapi_extra=json_or_form(EmbedBody))
async def embed(request: Request, state: State, caller: CallerDep, background: BackgroundTasks) -> dict[str, Any]:
    """Vectors for texts (JSON `texts`) or uploaded files (multipart `file`, repeatable, + `texts`)."""
    fields, files = await parse(request, state.settings, form_limits(state.settings, "embed"))
    if files and isinstance(fields.get("texts"), str):
        fields["texts"] = [fields["texts"]]
    body = validate(EmbedForm if files else EmbedBody, fields)
    if body.dim is not None and body.dim > state.space.dim:
        raise ApiError(422, f"invalid request: dim: at most {state.space.dim} (the space's dimension)")
    budget = Budget(state.settings, state.space.limits)
    texts = budget.texts(list(body.texts))
    items = await read_uploads(files, budget)
    if budget.big:
        background.add_task(release_memory)
    inputs = items + texts

    def work(job: Job) -> Any:
        return MeteredSpace(state.space, job).embed(inputs, dim=body.dim)

    vectors = await state.gate.run(caller, work)
    sources = [i.source for i in items] + ["<text>"] * len(texts)
    modalities = [i.modality for i in items] + ["text"] * len(texts)
    return {"dim": int(vectors.shape[1]), "items": [{"source": s, "modality": m, "vector": v.tolist()}
                                                    for s, m, v in zip(sources, modalities, vectors)]}


@router.post("/v1/classify", tags=["classify"], openapi_extra=json_or_form(ClassifyBody))
async def classify(request: Request, state: State, caller: CallerDep, background: BackgroundTasks) -> dict[str, Any]:
    """Zero-shot probabilities over `labels` for texts (JSON) or files (multipart, labels='a,b,c')."""
    fields, files = await parse(request, state.settings, form_limits(state.settings, "classify"))
    budget = Budget(state.settings, state.space.limits)
    if files:
        raw = validate(ClassifyForm, {"labels": fields.get("labels", "")}).labels
        labels = [x.strip() for x in raw.split(",") if x.strip()]
        if len(labels) < 2:
            raise ApiError(422, "give at least two comma-separated labels in the 'labels' field")
        budget.labels(labels)
        inputs: list[Any] = await read_uploads(files, budget)
    else:
        body = validate(ClassifyBody, fields)
        labels = budget.labels([x.strip() for x in body.labels])
        inputs = budget.texts(list(body.texts))
    if any(not x for x in labels) or len(set(labels)) != len(labels):
        raise ApiError(422, "invalid request: labels: give distinct, non-empty labels")
    if budget.big:
        background.add_task(release_memory)

    def work(job: Job) -> Any:
        return run_classify(MeteredSpace(state.space, job), inputs, labels)  # type: ignore[arg-type]

    results = await state.gate.run(caller, work)
    names = [f.filename for f in files] if files else ["<text>"] * len(inputs)
    return {"results": [{**r.to_dict(), "source": n} for r, n in zip(results, names)]}
