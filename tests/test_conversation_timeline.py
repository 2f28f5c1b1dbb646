"""Conversation timeline with fake engines that model latency (in the manner of livekit's
interruption test): the user speaks at 0.5-2.5 s, the brain answers at length, the avatar's own
voice leaks back into the microphone and must not interrupt it, the user speaks again at 5.0 s
and the avatar is interrupted by 5.3 s (media clock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from conversation_fakes import EnergyVAD, ScriptedASR, user_noise
from fakes import run_async
from test_session_timeline import Harness

from vlogger.runtime.conversation import Conversation
from vlogger.runtime.listen import ListenConfig

LONG_REPLY = "Sure thing. This is a long answer that goes on and on and on. And a third one"


class LongBrain:
    def __init__(self) -> None:
        self.heard: list[str] = []

    async def reply(self, text: str) -> AsyncIterator[str]:
        self.heard.append(text)
        for sentence in LONG_REPLY.split(". "):
            await asyncio.sleep(0.05)  # model latency per sentence
            yield sentence


async def _converse(echo_cancel: bool) -> tuple[Harness, Conversation, list[tuple[float, dict[str, Any]]]]:
    h = Harness()
    async with h:
        events: list[tuple[float, dict[str, Any]]] = []
        clock = h.pipe.clock

        def emit(ev: dict[str, Any]) -> None:
            events.append((clock.now(), ev))

        conv = Conversation(h.pipe, emit, LongBrain(), ListenConfig(echo_cancel=echo_cancel))
        listener = conv.start_listening(EnergyVAD(), ScriptedASR(["hello avatar"], latency_s=0.2))
        h.start_media()
        rng = np.random.default_rng(1)
        fed = 0  # microphone samples (16 kHz) sent so far: 20 ms frames, paced by the media clock
        while clock.now() < 7.0:
            while fed + 320 <= clock.now() * 16000:
                t = fed / 16000
                block = np.zeros(320, np.float32)
                if 0.5 <= t < 2.5 or 5.0 <= t < 6.0:
                    block += user_noise(320, rng)
                # the avatar's voice leaks back into the microphone at half level, 40 ms late
                block += 0.5 * h.pipe.played.get(t - 0.04, 320)
                listener.feed(block, 16000)
                fed += 320
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        conv.close()
    return h, conv, events


def _t(events: list[tuple[float, dict[str, Any]]], pred: Any) -> float | None:
    return next((t for t, e in events if pred(e)), None)


@run_async
async def test_user_speaks_avatar_answers_and_is_interrupted_by_5_3s() -> None:
    h, conv, events = await _converse(echo_cancel=True)
    user = [(round(t, 2), e["state"]) for t, e in events if e["type"] == "user"]
    assert [s for _, s in user][:4] == ["speaking", "silent", "speaking", "silent"], user
    first_on = next(e for _, e in events if e["type"] == "user")
    assert abs(first_on["t"] - 0.5) < 0.1  # the event names when speech began
    transcript = _t(events, lambda e: e["type"] == "transcript")
    assert transcript is not None and 2.5 < transcript < 2.5 + 0.5 + 0.2 + 0.3
    assert conv.brain.heard == ["hello avatar", "hello avatar"]  # both turns  # type: ignore[union-attr]
    # the reply started speaking and was NOT interrupted by its own echo before 5.0 s
    started = [h.event_time(f"r{i}", "started") for i in (1, 2, 3)]
    assert started[0] is not None
    assert h.event_time("r1", "done") is not None, "the first sentence did not finish: its echo cut it"
    assert h.event_time("r2", "started") is not None
    cut = [(t, e["id"]) for t, e in events if e.get("state") == "interrupted"]
    assert [i for _, i in cut][:2] == ["r2", "r3"]
    assert cut, "the user's speech at 5.0 s did not interrupt the avatar"
    assert all(5.0 < t <= 5.3 for t, _ in cut), cut
    assert len(conv.barge_ins) == 1
    # after the cut the avatar is silent (no speech placed after the interruption)
    assert not h.pipe.played.speaking_between(5.4, 6.5)
    assert any(e["type"] == "transcript" and e["t_start"] > 4.9 for _, e in events)


@run_async
async def test_without_the_echo_check_the_avatar_interrupts_itself() -> None:
    _, _, events = await _converse(echo_cancel=False)
    cut = [t for t, e in events if e.get("state") == "interrupted"]
    assert cut and min(cut) < 5.0  # the leak counts as the user: what the echo check prevents
