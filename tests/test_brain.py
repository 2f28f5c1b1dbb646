"""Built-in brains: echo, and the OpenAI-compatible one against a local SSE server started here."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fakes import run_async

from vlogger.engines.errors import InputError
from vlogger.runtime.brains import BrainConfig, EchoBrain, OpenAIBrain, SentenceCutter, make_brain

REPLY = ["Hel", "lo there", "! I am", " a local", " model. Dr. Smith", " says hi", "\n", "Bye", " now"]


@contextmanager
def sse_server(pieces: list[str], delay: float = 0.15, status: int = 200) -> Iterator[tuple[str, list[Any]]]:
    requests: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, dict(self.headers), body))
            if status != 200:
                self.send_response(status)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for p in pieces:
                chunk = {"choices": [{"index": 0, "delta": {"content": p}}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                time.sleep(delay)
            self.wfile.write(b"data: [DONE]\n\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()


def test_sentence_cutter_cuts_at_sentence_ends_only() -> None:
    c = SentenceCutter()
    out = [s for piece in REPLY for s in c.push(piece)] + c.flush()
    assert out == ["Hello there!", "I am a local model.", "Dr. Smith says hi", "Bye now"]
    c = SentenceCutter()
    assert c.push("Pi is 3.14 and e is 2.7") == [] and c.flush() == ["Pi is 3.14 and e is 2.7"]


@run_async
async def test_echo_brain_says_back_what_it_heard() -> None:
    assert [s async for s in EchoBrain().reply(" hello there ")] == ["hello there"]
    assert isinstance(make_brain(BrainConfig()), EchoBrain)


@run_async
async def test_openai_brain_streams_sentences_before_the_reply_is_complete() -> None:
    with sse_server(REPLY) as (url, requests):
        brain = OpenAIBrain(BrainConfig(name="openai", url=url, model="tiny"))
        t0 = time.monotonic()
        got: list[tuple[float, str]] = []
        async for sentence in brain.reply("Who are you?"):
            got.append((time.monotonic() - t0, sentence))
        path, _, body = requests[0]
    assert [s for _, s in got] == ["Hello there!", "I am a local model.", "Dr. Smith says hi", "Bye now"]
    total = len(REPLY) * 0.15
    assert got[0][0] < 0.6 < total - 0.3  # the first sentence came after 3 of 9 pieces
    assert path == "/v1/chat/completions" and body["stream"] is True and body["model"] == "tiny"
    assert body["messages"][-1] == {"role": "user", "content": "Who are you?"}
    assert brain.history[-1]["role"] == "assistant" and "local model" in brain.history[-1]["content"]


@run_async
async def test_openai_brain_stops_reading_when_interrupted_and_names_failures() -> None:
    with sse_server(REPLY, delay=0.3) as (url, _):
        brain = OpenAIBrain(BrainConfig(name="openai", url=url, model="tiny"))
        replies = brain.reply("hi")
        first = await replies.__anext__()
        await replies.aclose()  # barge-in: the answer is dropped
        assert first == "Hello there!" and brain.history[-1]["content"] == "Hello there!"
    with sse_server(REPLY, status=500) as (url, _):
        with pytest.raises(RuntimeError, match="HTTP 500"):
            _ = [s async for s in OpenAIBrain(BrainConfig(name="openai", url=url, model="m")).reply("x")]
    dead = OpenAIBrain(BrainConfig(name="openai", url="http://127.0.0.1:9/v1", model="m", timeout_s=2))
    with pytest.raises(RuntimeError, match="cannot reach"):
        _ = [s async for s in dead.reply("x")]
    for bad in (BrainConfig(name="openai"), BrainConfig(name="openai", url="ftp://x", model="m")):
        with pytest.raises(InputError):
            make_brain(bad)
    with pytest.raises(InputError, match="unknown"):
        make_brain(BrainConfig(name="clever"))
    await asyncio.sleep(0)
