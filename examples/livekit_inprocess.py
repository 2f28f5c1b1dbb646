"""A LiveKit agent with the vlogger avatar in the same process (``QueueAudioOutput``).

The agent's speech goes to the avatar through a queue instead of a DataStream, and the avatar's
video and audio are published from the agent's own participant: no avatar worker, no second
participant. Use it when the agent's machine has the cores for the avatar (2 per 512 px session).

    pip install "vlogger-runtime[livekit]"
    export LIVEKIT_URL=wss://... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python examples/livekit_inprocess.py dev      # then join a room with LiveKit's Agents Playground

The agent here only greets (with this project's packaged piper voice, so it runs without any
cloud model); give ``AgentSession`` your usual ``stt``/``llm``/``tts`` to make it converse.

Tested here: this path up to the room (``tests/test_livekit_worker.py`` runs ``AgentSession.say``
-> ``QueueAudioOutput`` -> ``VloggerVideoGenerator`` -> ``VloggerAvatarRunner`` on a real
``AVSynchronizer``, and the interruption accounting). Not tested here: publishing into a real room
(no LiveKit server runs on these machines); this file is written against ``livekit-agents`` 1.8.9.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import numpy as np
from livekit import rtc
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli
from livekit.agents.voice.avatar import QueueAudioOutput

from vlogger.integrations.livekit import VloggerVideoGenerator
from vlogger.integrations.livekit_runner import VloggerAvatarRunner
from vlogger.runtime.config import VloggerConfig

GREETING = "Hello! I am a talking avatar running right here, next to the agent."

server = AgentServer()


async def piper_speech(text: str) -> AsyncIterator[rtc.AudioFrame]:
    """``text`` in this project's packaged piper voice, as 20 ms LiveKit audio frames."""
    from vlogger.engines.tts import PiperTTS

    tts = PiperTTS(VloggerConfig().tts)
    chunks = await asyncio.to_thread(lambda: [c.pcm for c in tts.synthesize(text, 0.0)])
    pcm = np.clip(np.round(np.concatenate(chunks) * 32767), -32768, 32767).astype(np.int16)
    step = tts.sample_rate // 50
    for a in range(0, pcm.size, step):
        piece = pcm[a : a + step]
        yield rtc.AudioFrame(piece.tobytes(), tts.sample_rate, 1, piece.size)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    config = VloggerConfig()
    config.output.height = 256  # 1 core per session at 256 px, 2 at 512
    video = await VloggerVideoGenerator.create(config, photo=os.environ.get("VLOGGER_PHOTO"))
    audio = QueueAudioOutput(wait_playback_start=True)
    runner = VloggerAvatarRunner(ctx.room, audio_recv=audio, video_gen=video, options=video.avatar_options())
    await runner.start()
    ctx.add_shutdown_callback(runner.aclose)
    ctx.add_shutdown_callback(video.aclose)

    session: AgentSession[None] = AgentSession()  # your stt=..., llm=..., tts=... go here
    session.output.audio = audio  # set before start: the agent publishes no audio track of its own
    await session.start(Agent(instructions="You are a friendly assistant."), room=ctx.room)
    session.say(GREETING, audio=piper_speech(GREETING))


if __name__ == "__main__":
    cli.run_app(server)
