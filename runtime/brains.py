"""Built-in brains: what the avatar answers to a transcript when no agent is attached.

A brain turns the user's words into sentences to say, as an async generator, so the first sentence
can be spoken while the rest is still being written:

* :class:`EchoBrain` (the default) says back what it heard; the demo works offline.
* :class:`OpenAIBrain` streams a reply from any OpenAI-compatible ``/v1/chat/completions`` URL
  the user gives (llama.cpp's server, vLLM, ...): server-sent events are read as they arrive and
  cut at sentence ends by :class:`SentenceCutter`. It talks to that URL only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["BRAINS", "Brain", "BrainConfig", "EchoBrain", "OpenAIBrain", "SentenceCutter", "make_brain"]

#: Brain names selectable with ``vlogger serve --brain``.
BRAINS = ("echo", "openai", "none")


class Brain(Protocol):
    """Answers one user turn with sentences to say (an async generator, first sentence first).

    A generator (``async def`` with ``yield``), so a turn that is cut short (barge-in, a newer
    turn, the session closing) is closed at once with ``aclose()``, its request stopped."""

    def reply(self, text: str) -> AsyncGenerator[str, None]: ...


@dataclass(frozen=True)
class BrainConfig:
    """Which brain answers and how it reaches its model."""

    name: str = "echo"
    """``echo`` (repeat the transcript), ``openai`` (a chat-completions server) or ``none``."""
    url: str | None = None
    """Chat-completions URL (``http://127.0.0.1:8000/v1`` or the full ``.../chat/completions``)."""
    model: str | None = None
    """Model name sent in the request."""
    system_prompt: str = (
        "You are the voice of a friendly talking avatar. Answer in one to three short spoken "
        "sentences, without lists or markdown."
    )
    """First message of every conversation."""
    api_key_env: str = "VLOGGER_BRAIN_KEY"
    """Environment variable holding a bearer key for the URL (unset = no key is sent)."""
    timeout_s: float = 30.0
    """Seconds to wait for the server to answer or send the next token."""
    max_tokens: int = 300
    """Longest reply, in tokens."""
    temperature: float = 0.7
    """Sampling temperature."""
    history_turns: int = 10
    """User/assistant turns kept as context."""


class EchoBrain:
    """Says back what it heard."""

    async def reply(self, text: str) -> AsyncGenerator[str, None]:
        text = text.strip()
        if text:
            yield text


_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "approx", "no"}
_END = re.compile(r"""([.!?…]+["')\]]*)(\s+)|\n+""")


class SentenceCutter:
    """Cuts a stream of text pieces at sentence ends (``.!?`` then a space, or a line break)."""

    def __init__(self, min_chars: int = 2) -> None:
        self._buf = ""
        self.min_chars = min_chars

    def push(self, piece: str) -> list[str]:
        """Add a piece; returns the sentences it completed."""
        self._buf += piece
        out: list[str] = []
        pos = 0
        for m in _END.finditer(self._buf):
            candidate = self._buf[pos : m.end()].strip()
            word = re.findall(r"[\w.]+$", self._buf[pos : m.start()].lower())
            if m.group(1) and m.group(1).startswith(".") and word and word[0].rstrip(".") in _ABBREV:
                continue
            if len(candidate) >= self.min_chars and re.search(r"\w", candidate):
                out.append(candidate)
                pos = m.end()
        self._buf = self._buf[pos:]
        return out

    def flush(self) -> list[str]:
        """What is left (the reply ended without a full stop)."""
        rest, self._buf = self._buf.strip(), ""
        return [rest] if re.search(r"\w", rest) else []


def _chat_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        from vlogger.engines.errors import InputError

        raise InputError(f"--brain-url {url!r} must be an http:// or https:// URL")
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class OpenAIBrain:
    """Streams a reply from an OpenAI-compatible chat-completions server (SSE)."""

    def __init__(self, config: BrainConfig) -> None:
        from vlogger.engines.errors import InputError

        if not config.url or not config.model:
            raise InputError("the openai brain needs --brain-url and --brain-model")
        self.config = config
        self.url = _chat_url(config.url)
        self.history: list[dict[str, str]] = []

    def _request(self, text: str) -> urllib.request.Request:
        cfg = self.config
        messages = [{"role": "system", "content": cfg.system_prompt}, *self.history]
        messages.append({"role": "user", "content": text})
        body = {
            "model": cfg.model,
            "messages": messages,
            "stream": True,
            "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature,
        }
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get(cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")

    async def reply(self, text: str) -> AsyncGenerator[str, None]:
        """Sentences of the reply as the server streams them; cancelling stops the request."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        holder: dict[str, Any] = {}

        def put(kind: str, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(pieces.put_nowait, (kind, value))

        def read() -> None:
            # the chat-completions server the user named with --brain-url (never a model download;
            # no URL is built in)
            try:
                with urllib.request.urlopen(self._request(text), timeout=self.config.timeout_s) as resp:
                    holder["resp"] = resp
                    for raw in resp:
                        if stop.is_set():
                            return
                        line = raw.decode("utf-8", "replace").strip()
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        try:
                            obj = json.loads(data)
                            delta = obj["choices"][0].get("delta") or obj["choices"][0].get("message") or {}
                        except (ValueError, KeyError, IndexError, TypeError):
                            continue
                        content = delta.get("content")
                        if isinstance(content, str) and content:
                            put("text", content)
                put("end", None)
            except urllib.error.HTTPError as exc:
                put("error", f"the brain server answered HTTP {exc.code} ({exc.reason})")
            except Exception as exc:
                put("error", f"cannot reach the brain server at {self.url}: {exc}")

        thread = threading.Thread(target=read, name="vlogger-brain", daemon=True)
        thread.start()
        cutter = SentenceCutter()
        said: list[str] = []
        try:
            while True:
                kind, value = await pieces.get()
                if kind == "text":
                    for sentence in cutter.push(value):
                        said.append(sentence)
                        yield sentence
                elif kind == "end":
                    for sentence in cutter.flush():
                        said.append(sentence)
                        yield sentence
                    return
                else:
                    raise RuntimeError(value)
        finally:
            stop.set()
            resp = holder.get("resp")
            if resp is not None:  # unblock the reader (an interrupted reply)
                with contextlib.suppress(Exception):
                    resp.close()
            self.history += [
                {"role": "user", "content": text},
                {"role": "assistant", "content": " ".join(said)},
            ]
            self.history = self.history[-2 * self.config.history_turns :]


def make_brain(config: BrainConfig) -> Brain | None:
    """The brain the config names (``None`` for ``none``)."""
    if config.name == "echo":
        return EchoBrain()
    if config.name == "openai":
        return OpenAIBrain(config)
    if config.name == "none":
        return None
    from vlogger.engines.errors import InputError

    raise InputError(f"--brain {config.name!r} is unknown (choose from {', '.join(BRAINS)})")
