"""The budget client: retries within a deadline, a 429's wait, answers passed through."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from approver.connectors.http_client import BudgetClient
from approver.domain.control_plane import ControlPlaneUnavailable


class Script:
    """Answers the next status of a list (then 200), counting requests."""

    def __init__(self, *answers: web.Response) -> None:
        self.answers = list(answers)
        self.count = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.count += 1
        if self.answers:
            return self.answers.pop(0)
        return web.json_response({"ok": True, "auth": request.headers.get("X-Key")})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Script, TestServer]]:
    script = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield script, server
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client(server: TestServer, session: aiohttp.ClientSession) -> BudgetClient:
    return BudgetClient(str(server.make_url("")), session=session, request_timeout=1.0)


class TestCall:
    async def test_transient_answers_are_retried(
        self, served: tuple[Script, TestServer], session: aiohttp.ClientSession
    ) -> None:
        """500, 502, 503 and 504 are retried until an answer that is not transient."""
        script, server = served
        script.answers = [web.Response(status=s) for s in (500, 502, 503, 504)]
        http = client(server, session)
        answer = await http.call(
            "GET", "/x", deadline=http.deadline(5), what="GET /x", headers={"X-Key": "k"}
        )
        assert (answer.status, answer.get("ok"), answer.get("auth")) == (200, True, "k")
        assert script.count == 5

    async def test_other_statuses_are_answers(
        self, served: tuple[Script, TestServer], session: aiohttp.ClientSession
    ) -> None:
        """A 404 with a JSON body is returned at once, decoded."""
        script, server = served
        script.answers = [web.json_response({"error": "Agent not found"}, status=404)]
        http = client(server, session)
        answer = await http.call("POST", "/x", deadline=http.deadline(5), what="POST /x")
        assert (answer.status, answer.get("error"), script.count) == (404, "Agent not found", 1)

    async def test_rate_limit_waits_when_it_fits(
        self, served: tuple[Script, TestServer], session: aiohttp.ClientSession
    ) -> None:
        """A 429 whose retryAfter fits the deadline is waited out, then retried."""
        script, server = served
        script.answers = [web.json_response({"retryAfter": 0.2}, status=429)]
        http = client(server, session)
        answer = await http.call("GET", "/x", deadline=http.deadline(5), what="GET /x")
        assert (answer.status, script.count) == (200, 2)

    async def test_rate_limit_past_the_deadline(
        self, served: tuple[Script, TestServer], session: aiohttp.ClientSession
    ) -> None:
        """A 429 asking for 60 s (StreamSpace's retryAfter) ends the call with that wait."""
        script, server = served
        script.answers = [web.json_response({"retryAfter": 60}, status=429)]
        http = client(server, session)
        with pytest.raises(ControlPlaneUnavailable, match="rate limited") as info:
            await http.call("GET", "/x", deadline=http.deadline(2), what="GET /x")
        assert info.value.retry_after == 60
        assert script.count == 1

    @pytest.mark.parametrize("header", ["²", "1.5", "Wed, 21 Oct 2026 07:28:00 GMT", "-1"])
    async def test_odd_retry_after_is_no_crash(
        self, served: tuple[Script, TestServer], session: aiohttp.ClientSession, header: str
    ) -> None:
        """A Retry-After that is not ASCII digits (a superscript two, a date) falls back to a
        short wait instead of raising."""
        script, server = served
        script.answers = [web.Response(status=429, headers={"Retry-After": header})]
        http = client(server, session)
        answer = await http.call("GET", "/x", deadline=http.deadline(5), what="GET /x")
        assert (answer.status, script.count) == (200, 2)

    async def test_deadline(
        self, served: tuple[Script, TestServer], session: aiohttp.ClientSession
    ) -> None:
        """A server that keeps failing ends the call at the deadline, naming the last error."""
        script, server = served
        script.answers = [web.Response(status=503) for _ in range(1000)]
        http = client(server, session)
        # The last failure is named: the 503, or the timeout of an attempt cut by the deadline.
        with pytest.raises(
            ControlPlaneUnavailable,
            match=r"GET /x: no answer within the budget \((HTTP 503|TimeoutError)\)",
        ):
            await http.call("GET", "/x", deadline=http.deadline(0.5), what="GET /x")
        assert script.count > 2

    async def test_refused_connection(self, session: aiohttp.ClientSession) -> None:
        """Nobody listening: retried until the deadline, then ControlPlaneUnavailable."""
        http = BudgetClient("http://127.0.0.1:9", session=session, request_timeout=0.2)
        with pytest.raises(
            ControlPlaneUnavailable, match=r"budget \((ClientConnectorError|TimeoutError)\)"
        ):
            await http.call("GET", "/x", deadline=http.deadline(0.3), what="GET /x")
