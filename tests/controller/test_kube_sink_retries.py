"""The status writer's retry policy, against a local HTTP server that answers as told: the
answers the real apiserver gives only under load or at a token rotation (429, 5xx, 401, a
connection cut), each on cue. The writer against the real apiserver: tests/e2e."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import kopf
import pytest
from aiohttp import web

from flowreg.controller import kube
from flowreg.controller.kube import KubeSink, WriteFailed

BODY = {"metadata": {"namespace": "ns", "name": "reg", "uid": "u-1"}}
STATUS_PATH = "/apis/flowreg.dev/v1alpha1/namespaces/ns/flowregistries/reg/status"


class Server:
    """Answers each request with the next of ``answers`` (the last one repeats); records
    what it was asked."""

    def __init__(self) -> None:
        self.answers: list[Callable[[web.Request], web.StreamResponse]] = []
        self.seen: list[tuple[str, str, str | None, bytes]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path, request.headers.get("Authorization"),
                          await request.read()))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request)


def status(code: int, **headers: str) -> Callable[[web.Request], web.StreamResponse]:
    return lambda _: web.json_response({"code": code}, status=code, headers=headers)


def cut(request: web.Request) -> web.StreamResponse:
    """End the connection without an answer."""
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=200)


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Server, str]]:
    monkeypatch.setattr(kube, "RETRY_DELAY", 0.01)
    fake = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def logins(url: str, tokens: list[str]) -> tuple[Callable[[], kopf.ConnectionInfo], list[str]]:
    """Credentials that hand out ``tokens`` in turn (the last repeats), and the ones given."""
    given: list[str] = []

    def credentials() -> kopf.ConnectionInfo:
        given.append(tokens[min(len(given), len(tokens) - 1)])
        return kopf.ConnectionInfo(server=url, token=given[-1])
    return credentials, given


@contextlib.asynccontextmanager
async def opened(url: str, tokens: list[str] | None = None,
                 given: list[str] | None = None) -> AsyncIterator[KubeSink]:
    """A status writer logging in to ``url`` with ``tokens`` in turn (each login's token
    appended to ``given``), closed afterwards."""
    credentials, logged = logins(url, tokens or ["t"])
    sink = KubeSink(credentials)
    try:
        yield sink
    finally:
        await sink.close()
        if given is not None:
            given.extend(logged)


async def test_busy_and_failing_answers_are_tried_again_until_one_lands(server):
    fake, url = server
    fake.answers = [status(429, **{"Retry-After": "0"}), status(503), cut, status(200)]
    async with opened(url) as sink:
        await sink.patch_status(BODY, {"flowCount": 3})
    assert [(m, p) for m, p, _, _ in fake.seen] == [("PATCH", STATUS_PATH)] * 4
    assert all(body == b'{"status":{"flowCount":3}}' for *_, body in fake.seen)


async def test_a_write_that_keeps_failing_raises_after_its_tries_naming_the_answer(server):
    fake, url = server
    fake.answers = [status(500)]
    async with opened(url) as sink:
        with pytest.raises(WriteFailed, match=r"PATCH .*/reg/status: 500") as failed:
            await sink.patch_status(BODY, {"flowCount": 3})
    assert failed.value.status == 500 and len(fake.seen) == kube.ATTEMPTS


async def test_a_refused_write_is_not_tried_again(server):
    fake, url = server
    fake.answers = [status(422)]
    async with opened(url) as sink:
        with pytest.raises(WriteFailed, match="422"):
            await sink.patch_status(BODY, {"flowCount": -1})
    assert len(fake.seen) == 1


async def test_a_rejected_token_logs_in_again_once_and_keeps_the_new_login(server):
    fake, url = server
    fake.answers = [status(401), status(200)]
    given: list[str] = []
    async with opened(url, ["old", "new"], given) as sink:
        await sink.patch_status(BODY, {"flowCount": 1})
        await sink.patch_status(BODY, {"flowCount": 2})
    assert given == ["old", "new"]
    assert [auth for _, _, auth, _ in fake.seen] == ["Bearer old", "Bearer new", "Bearer new"]
    fake.answers, fake.seen = [status(401)], []
    # a token refused after the new login too: said, not a loop
    async with opened(url, ["a", "b"]) as sink:
        with pytest.raises(WriteFailed, match="401"):
            await sink.patch_status(BODY, {"flowCount": 1})
    assert len(fake.seen) == 2


async def test_an_event_that_cannot_be_posted_is_logged_not_raised(server, caplog):
    fake, url = server
    fake.answers = [status(403)]
    async with opened(url) as sink:
        with caplog.at_level(logging.WARNING, logger="flowreg.controller"):
            await sink.event(BODY, "Normal", "Synced", "3 flow(s) in sync")
    [(method, path, _, _)] = fake.seen
    assert (method, path) == ("POST", "/api/v1/namespaces/ns/events")
    assert any("event Synced about ns/reg not posted" in r.getMessage() and "403" in
               r.getMessage() for r in caplog.records)


async def test_a_gone_registry_is_logged_not_raised(server, caplog):
    fake, url = server
    fake.answers = [status(404)]
    async with opened(url) as sink:
        with caplog.at_level(logging.INFO, logger="flowreg.controller"):
            await sink.patch_status(BODY, {"flowCount": 1})
    assert any("ns/reg is gone" in r.getMessage() for r in caplog.records)
