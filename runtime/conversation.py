"""The turn-taking of one session: microphone -> :class:`~vlogger.runtime.listen.Listener` ->
events; a final transcript goes to the attached agents or, when none is attached, to the built-in
brain, whose sentences are queued as utterances; user speech during avatar speech interrupts it.

Everything here runs on the event loop; the listener's threads hand their events over with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from vlogger.engines.asr.base import ASR
from vlogger.engines.asr.vad import SpeechProbability
from vlogger.runtime.brains import Brain
from vlogger.runtime.listen import ListenConfig, Listener
from vlogger.runtime.pipeline import Pipeline, Utterance
from vlogger.runtime.protocol import ProtocolError, error_event, event

__all__ = ["Conversation"]

_LOG = logging.getLogger(__name__)


class Conversation:
    """Listener, brain and barge-in of one session (create it on the event loop)."""

    def __init__(
        self,
        pipeline: Pipeline,
        emit: Callable[[dict[str, Any]], None],
        brain: Brain | None,
        config: ListenConfig,
    ) -> None:
        self.pipeline = pipeline
        self.emit = emit
        self.brain = brain
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.listener: Listener | None = None
        self.agents = 0
        """Attached agents; while there is one, the built-in brain is silent."""
        self._reply: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self.onsets: list[tuple[float, float]] = []
        """(speech start on the media clock, ``time.monotonic()`` of the onset decision)."""
        self.barge_ins: list[float] = []
        """``time.monotonic()`` of each barge-in."""
        self.transcripts: list[tuple[float, dict[str, Any]]] = []
        """(``time.monotonic()`` at arrival, event) of each final transcript."""
        self.closed = False

    # ---- the microphone ---------------------------------------------------------------------
    def start_listening(self, vad: SpeechProbability, asr: ASR) -> Listener:
        """Create and start the listener (call once, with a VAD and a recogniser)."""
        if self.listener is None:
            self.listener = Listener(
                vad,
                asr,
                self.config,
                self.pipeline.clock.now,
                on_event=self._from_thread,
                on_onset=lambda ev: self._from_thread(
                    {"type": "_onset", "t": ev.start, "decided": time.monotonic()}
                ),
                played=self.pipeline.played,
            )
            self.listener.start()
        return self.listener

    def _from_thread(self, ev: dict[str, Any]) -> None:
        if self.closed or self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._on_listener_event, ev)

    def _on_listener_event(self, ev: dict[str, Any]) -> None:
        if self.closed:
            return
        if ev["type"] == "_onset":
            self.onsets.append((ev["t"], ev["decided"]))
            if self.config.barge_in and self.busy():
                self.barge_ins.append(time.monotonic())
                self.interrupt()
                self.pipeline.stages.barge_in.observe(max(0.0, self.pipeline.clock.now() - ev["t"]))
            return
        self.emit(ev)
        if ev["type"] == "transcript" and ev.get("final"):
            self.transcripts.append((time.monotonic(), ev))
            heard = max(0.0, self.pipeline.clock.now() - float(ev["t_end"]))
            self.pipeline.stages.speech_end_to_transcript.observe(heard)
            if self.agents == 0 and self.brain is not None:
                self._start_reply(ev["text"])

    def busy(self) -> bool:
        """The avatar is speaking, has speech queued, or its brain is still answering."""
        return self.pipeline.unfinished() > 0 or (self._reply is not None and not self._reply.done())

    # ---- speech out ---------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop the reply being written and every utterance queued or playing."""
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
        self._reply = None
        for utt in self.pipeline.interrupt():
            self.emit(event("utterance", id=utt.id, state="interrupted"))

    def _start_reply(self, text: str) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()  # a new turn replaces an answer still being written
        self._reply = asyncio.ensure_future(self._speak_reply(text))

    async def _speak_reply(self, text: str) -> None:
        assert self.brain is not None
        replies = self.brain.reply(text)
        try:
            async for sentence in replies:
                utt = Utterance(id=f"r{next(self._ids)}", text=sentence)
                try:
                    self.pipeline.enqueue(utt)
                except ProtocolError as exc:
                    self.emit(exc.to_event())
                    return
                self.emit(event("utterance", id=utt.id, state="queued", text=sentence))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _LOG.warning("brain failed: %s", exc)
            self.emit(error_event("brain_failed", str(exc)))
        finally:  # a cancelled turn stops the brain now (an HTTP stream is released), not at GC
            with contextlib.suppress(Exception):
                await replies.aclose()

    def close(self, timeout: float = 1.0) -> None:
        """Stop the reply task and the listener's threads (blocking: call off the loop or at the end)."""
        self.closed = True
        if self._reply is not None:
            self.loop.call_soon_threadsafe(self._reply.cancel)
        if self.listener is not None:
            self.listener.close(timeout)
