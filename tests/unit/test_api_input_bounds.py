"""Bounds on what the admin API accepts, without services: request bodies over the limit get
413 before the route reads them (declared or chunked), and the policy's lists take only ids
the transaction contract accepts."""

from __future__ import annotations

from collections.abc import Iterator

import pydantic
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from services.api import problems
from services.api.console.admin import _form_policy
from services.api.limits import BodyLimit
from services.api.schemas import POLICY_LIST_MAX, PolicyIn

LIMIT = 2048
CARD = "4111111111111111"  # the Luhn-valid test number of the card schemes


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.add_exception_handler(problems.Problem, problems.handle_problem)
    seen: list[int] = []

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        seen.append(len(body))
        return {"bytes": len(body)}

    @app.post("/parsed")
    async def parsed(body: list[int]) -> dict[str, int]:  # FastAPI reads and parses it
        seen.append(len(body))
        return {"items": len(body)}

    app.add_middleware(BodyLimit, limit=LIMIT)
    test_client = TestClient(app)
    test_client.seen = seen  # type: ignore[attr-defined]
    return test_client


def _chunks(total: int, size: int = 512) -> Iterator[bytes]:
    while total > 0:
        yield b"x" * min(size, total)
        total -= size


def test_a_body_at_the_limit_is_read(client: TestClient) -> None:
    assert client.post("/echo", content=b"x" * LIMIT).json() == {"bytes": LIMIT}
    assert client.post("/echo", content=_chunks(LIMIT)).json() == {"bytes": LIMIT}


def test_a_declared_body_over_the_limit_is_refused_unread(client: TestClient) -> None:
    response = client.post("/echo", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == problems.PROBLEM_JSON
    assert response.json()["type"] == "/problems/payload-too-large"
    assert f"{LIMIT:,} bytes" in response.json()["detail"]
    assert client.seen == []  # type: ignore[attr-defined]


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(client: TestClient) -> None:
    response = client.post("/echo", content=_chunks(LIMIT + 1))  # no Content-Length
    assert response.status_code == 413
    assert response.json()["type"] == "/problems/payload-too-large"
    assert client.seen == []  # type: ignore[attr-defined]


def _json_chunks(items: int) -> Iterator[bytes]:
    yield b"["
    for i in range(items):
        yield b"1," if i < items - 1 else b"1"
    yield b"]"


def test_a_chunked_body_is_refused_with_413_where_fastapi_parses_it(client: TestClient) -> None:
    """A new user's check: on a route with a JSON body parameter the refusal came out as
    FastAPI's 400 'error parsing the body' (it catches errors raised while it reads)."""
    json = {"Content-Type": "application/json"}
    small = client.post("/parsed", content=_json_chunks(500), headers=json)  # chunked
    assert small.json() == {"items": 500}
    big = client.post("/parsed", content=_json_chunks(LIMIT), headers=json)  # 2 * LIMIT + 1 B
    assert big.status_code == 413, big.text
    assert big.json()["type"] == "/problems/payload-too-large"


@pytest.mark.parametrize(
    ("ids", "why"),
    [
        ([CARD], "card number"),
        ([" c-12 "], "whitespace"),
        ([""], "1-64 printable"),
        (["x" * 65], "1-64 printable"),
        (["a\tb"], "1-64 printable"),
    ],
)
def test_the_apis_policy_lists_take_only_contract_ids(ids: list[str], why: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=why):
        PolicyIn(block_customers=ids)
    assert PolicyIn(block_customers=["c-12", "7"]).block_customers == ["c-12", "7"]


def test_the_consoles_policy_form_takes_one_id_per_line() -> None:
    """One id per line, the line's edge whitespace dropped (never part of an id): ids with
    spaces or commas inside, which the API accepts, survive a save from the console (it split
    on them, and ["a b", "x,y"] became ["a", "b", "x", "y"]); a card number or an over-long id
    is refused."""
    with pytest.raises(ValueError, match="card number") as refused:
        _form_policy({"block_customers": f"c-1\n{CARD}"})
    assert CARD not in str(refused.value)  # the message masks it
    with pytest.raises(ValueError, match="1-64 printable"):
        _form_policy({"allow_terminals": "x" * 65})
    assert _form_policy({"block_customers": " c-1 \r\n\n c-2 "}).block_customers == {"c-1", "c-2"}
    kept = _form_policy({"block_terminals": "a b\nx,y"}).block_terminals
    assert kept == {"a b", "x,y"}


def test_policy_lists_are_bounded() -> None:
    many = [f"c-{i}" for i in range(POLICY_LIST_MAX + 1)]
    with pytest.raises(pydantic.ValidationError):
        PolicyIn(allow_terminals=many)
    with pytest.raises(ValueError, match="more than"):
        _form_policy({"allow_terminals": "\n".join(many)})
    assert len(PolicyIn(allow_terminals=many[:-1]).allow_terminals) == POLICY_LIST_MAX


@pytest.mark.parametrize("name", ["4111 1111 1111 1111", "4111111111111111", "", " ops", "a\nb"])
def test_a_key_is_never_named_with_a_card_number_or_nothing(name: str) -> None:
    """A key's name is the actor of every change it makes (policy history, the console):
    the id rules hold for it, and the refusal does not repeat a card number."""
    from services.api.keys import create_key

    with pytest.raises(ValueError) as refused:
        create_key(None, name, "admin")  # refused before Redis is touched
    assert "4111111111111111" not in str(refused.value).replace(" ", "")
