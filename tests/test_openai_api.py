"""`POST /v1/embeddings` through the real `openai` client against a live uvicorn server on
loopback: both encodings, lists, Matryoshka `dimensions`, a data-URL image, and every refusal in
OpenAI's error shape."""

import base64
import io

import httpx
import numpy as np
import pytest

from conftest import draw_image
from omnibind.collection import Collection
from live_server import Live
from omnibind.server import ServerSettings, create_app

openai = pytest.importorskip("openai", reason="the openai client is a test dependency (pip install openai)")

TOKEN = "test-token-openai"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, space):
    home = tmp_path_factory.mktemp("home")
    coll = Collection.open("oa", space=space, home=home)
    live = Live(create_app(ServerSettings(collection="oa", home=home, max_texts=8), TOKEN, coll))
    yield f"{live.url}/v1"
    live.stop()


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key=TOKEN, max_retries=0, timeout=60)


def png_data_url(colour: str = "red") -> str:
    out = io.BytesIO()
    draw_image("circle", 96, colour).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def test_float_vectors_equal_space_encode(client, space):
    r = client.embeddings.create(input="a dog barks at the mailman", model="omnibind", encoding_format="float")
    assert r.object == "list" and r.model == space.name and len(r.data) == 1
    assert r.data[0].index == 0 and r.data[0].object == "embedding"
    np.testing.assert_allclose(r.data[0].embedding, space.encode("a dog barks at the mailman"), atol=1e-5)
    tokenizer = space.towers["text"].backbone.model.tokenizer
    assert r.usage.prompt_tokens == r.usage.total_tokens == len(tokenizer("a dog barks at the mailman")["input_ids"])


def test_base64_list_keeps_order(client, space, base_url):
    texts = ["red apples", "the stock market fell", "a violin solo"]
    r = client.embeddings.create(input=texts, model=space.name)  # the client asks for base64 and decodes it
    got = np.array([d.embedding for d in sorted(r.data, key=lambda d: d.index)])
    np.testing.assert_allclose(got, space.encode(texts), atol=1e-5)
    raw = httpx.post(f"{base_url}/embeddings", json={"input": texts, "model": "omnibind", "encoding_format": "base64"},
                     headers={"Authorization": f"Bearer {TOKEN}"}).json()
    first = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(first, space.encode(texts[0]), atol=1e-6)
    assert [d["index"] for d in raw["data"]] == [0, 1, 2]


def test_dimensions_truncate_and_renormalise(client, space):
    r = client.embeddings.create(input=["a quiet forest"], model="omnibind", dimensions=64, encoding_format="float")
    v = np.array(r.data[0].embedding)
    assert v.shape == (64,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(v, space.embed(["a quiet forest"], dim=64)[0], atol=1e-5)


def test_data_url_image_beside_text(client, space):
    url = png_data_url("red")
    r = client.embeddings.create(input=["a red circle", url], model="omnibind", encoding_format="float")
    image = io.BytesIO(base64.b64decode(url.split(",", 1)[1]))
    from PIL import Image

    np.testing.assert_allclose(r.data[1].embedding, space.embed([Image.open(image).convert("RGB")])[0], atol=1e-4)
    np.testing.assert_allclose(r.data[0].embedding, space.encode("a red circle"), atol=1e-5)
    assert r.usage.prompt_tokens == len(space.towers["text"].backbone.model.tokenizer("a red circle")["input_ids"])


def test_models_list(client, space):
    assert {m.id for m in client.models.list()} == {space.name, "omnibind"}


@pytest.mark.parametrize("kwargs, error, param, code", [
    ({"input": [[1, 2, 3]]}, "BadRequestError", "input", "unsupported_input"),
    ({"input": [101, 2023, 102]}, "BadRequestError", "input", "unsupported_input"),
    ({"input": []}, "BadRequestError", "input", None),
    ({"input": ["ok", ""]}, "BadRequestError", "input", None),
    ({"input": "x", "model": "text-embedding-3-small"}, "NotFoundError", "model", "model_not_found"),
    ({"input": "x", "dimensions": 100_000}, "BadRequestError", "dimensions", None),
    ({"input": "x", "dimensions": 385}, "BadRequestError", "dimensions", None),
    ({"input": ["data:text/plain;base64,aGVsbG8="]}, "BadRequestError", "input", None),
    ({"input": ["data:image/png;base64,!!notbase64"]}, "BadRequestError", "input", None),
    ({"input": ["data:image/png;base64,aGVsbG8="]}, "BadRequestError", "input", "invalid_input"),
    ({"input": ["t"] * 9}, "APIStatusError", "max_texts", "max_texts"),
])
def test_errors_in_openai_shape(client, space, kwargs, error, param, code):
    args = {"model": "omnibind", "encoding_format": "float", **kwargs}
    with pytest.raises(getattr(openai, error)) as info:
        client.embeddings.create(**args)
    body = info.value.body
    assert set(body) == {"message", "type", "param", "code"} and body["message"], body
    assert (body["param"], body["code"]) == (param, code)
    assert body["type"] == ("rate_limit_error" if info.value.status_code == 429 else "invalid_request_error")


def test_wrong_key_is_401_and_no_key_is_anonymous(base_url, space):
    wrong = openai.OpenAI(base_url=base_url, api_key="not-the-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.embeddings.create(input="x", model="omnibind")
    assert info.value.body["code"] == "invalid_api_key" and info.value.body["type"] == "authentication_error"
    r = httpx.post(f"{base_url}/embeddings", json={"input": "a cat", "model": "omnibind"})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == space.dim
    assert httpx.post(f"{base_url}/embeddings", content=b"{", headers={"content-type": "application/json"}
                      ).json()["error"]["type"] == "invalid_request_error"
