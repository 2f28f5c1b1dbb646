"""LiveKit's ``AvatarRunner`` with interruptions that stop the sound at once (``livekit-agents`` 1.8.9).

The stock runner (``livekit/agents/voice/avatar/_runner.py``) answers ``clear_buffer`` with the sum
of the audio frames it handed to its ``AVSynchronizer`` and leaves the audio already queued in its
``rtc.AudioSource`` (up to ``_queue_size_ms``, 100 ms) to play out, plus one frame whose push was
in flight: measured here with the stock runner, the cut speech went on for about 115 ms after the
interruption, and that in-flight frame (40 ms) was added to the *next* segment's playback position.
:class:`VloggerAvatarRunner` keeps everything else of the runner (track publishing, segment ends,
``playback_started``) and changes only that:

- on ``clear_buffer`` it empties the audio source's queue and the synchronizer's video queue at
  once, tells the generator to drop its queued speech, and reports ``playback_finished`` with
  ``interrupted=True`` and the position actually heard (the audio handed over minus what was still
  queued);
- a frame whose push was under way when the interruption came is not counted for any segment, and
  what it queued is emptied again as soon as the push returns;
- the video frames of the cut speech that the generator still yields are dropped: with a
  :class:`~vlogger.integrations.livekit.VloggerVideoGenerator`, those whose motion is still
  speaking (the frame it drew ahead, and the engine's last speaking frame: measured, two), at
  most ``_MAX_STALE_FRAMES``, and none once the agent sends new speech; with another generator,
  the one frame drawn ahead. The only picture of the cut speech still shown is then the one the
  synchronizer holds (shown within one frame interval); the video goes on with the next frame.
  The runner chains itself into the generator's ``on_frame`` for this.

- each piece of speech starts after ``audio_delay_ms`` of silence (default: the queue size,
  100 ms), not counted in the playback position, and ``playback_started`` is sent when the speech
  itself starts playing: a video frame passes through the synchronizer's queue and pacer before
  its source sees it, while speech after an idle spell finds the audio queue empty. Measured at
  the sources' own local streams (``benchmarks/integrations.py``), the stock runner's video came
  about 100 ms after its sound; the silence brings them together.

It also closes cleanly when ``start`` never finished (an agent that never came; the stock
``aclose`` then fails on a task it never made and leaves its sources open).

It overrides private methods of the pinned runner (``_on_clear_buffer``, ``_forward_video``) and
uses its private state (``_playback_position``, ``_audio_playing``, ``_av_sync``,
``_audio_source``, ...), so it is tied to ``livekit-agents==1.8.9`` (the ``livekit`` extra pins it).
``tests/test_livekit_worker.py`` runs it without a Room on a real ``AVSynchronizer``,
``AudioSource`` and ``VideoSource`` (only the track publishing, which needs a server, is skipped);
publishing into a real room is not tested here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from livekit import rtc
from livekit.agents.utils import aio
from livekit.agents.voice.avatar import (
    AudioReceiver,
    AudioSegmentEnd,
    AvatarOptions,
    AvatarRunner,
    VideoGenerator,
)

from vlogger.engines.stream import StreamFrame
from vlogger.integrations.livekit import VloggerVideoGenerator

__all__ = ["VloggerAvatarRunner"]

_LOG = logging.getLogger(__name__)

_MAX_STALE_FRAMES = 3
"""At most this many video frames are dropped after an interruption (the video never stalls for
longer than that)."""


class VloggerAvatarRunner(AvatarRunner):
    """An ``AvatarRunner`` whose interruptions cut the sound at once and report what was heard (see
    the module docs). Same arguments as ``AvatarRunner``; ``queue_size_ms`` is its
    ``_queue_size_ms`` (the audio source's and the synchronizer's video queue)."""

    _playback_position: float
    _audio_playing: bool
    _audio_source: rtc.AudioSource
    _av_sync: rtc.AVSynchronizer

    def __init__(
        self,
        room: rtc.Room,
        *,
        audio_recv: AudioReceiver,
        video_gen: VideoGenerator,
        options: AvatarOptions,
        queue_size_ms: int = 100,
        audio_delay_ms: int | None = None,
    ) -> None:
        super().__init__(
            room, audio_recv=audio_recv, video_gen=video_gen, options=options, _queue_size_ms=queue_size_ms
        )
        delay_ms = queue_size_ms if audio_delay_ms is None else max(0, int(audio_delay_ms))
        self._audio_delay_s = delay_ms / 1000.0
        """Silence played before each piece of speech, so that it comes out with its video."""
        self._replaced: list[rtc.AudioSource | rtc.AVSynchronizer] = []
        """The base class's audio source and synchronizer, replaced here; closed on start."""
        if delay_ms > 0:
            # the audio source also holds that silence, or pushing it would hold the video back
            self._replaced += [self._av_sync, self._audio_source]
            self._audio_source = rtc.AudioSource(
                sample_rate=options.audio_sample_rate,
                num_channels=options.audio_channels,
                queue_size_ms=queue_size_ms + delay_ms,
            )
            self._av_sync = rtc.AVSynchronizer(
                audio_source=self._audio_source,
                video_source=self._video_source,
                video_fps=options.video_fps,
                video_queue_size_ms=queue_size_ms,
            )
        self._interruptions = 0
        """How many interruptions came: a push that straddles one belongs to no segment."""
        self._stale_video = 0
        """Video frames that may still be dropped after an interruption (see ``_is_stale``)."""
        self._last_drawn: StreamFrame[Any] | None = None
        self._knows_speech = isinstance(video_gen, VloggerVideoGenerator)
        if isinstance(video_gen, VloggerVideoGenerator):
            user_callback = video_gen.on_frame

            def on_frame(frame: StreamFrame[Any]) -> None:
                self._last_drawn = frame
                if user_callback is not None:
                    user_callback(frame)

            video_gen.on_frame = on_frame
        self._running = False
        """Whether ``start`` went through (the base ``aclose`` fails on a runner that did not)."""

    async def start(self) -> None:
        await self._close_replaced()
        await super().start()
        self._running = True

    async def _close_replaced(self) -> None:
        for replaced in self._replaced:
            await replaced.aclose()
        self._replaced.clear()

    async def aclose(self) -> None:
        """Close the runner, also one whose ``start`` never finished (an agent that never came:
        the base class would fail on the tasks it never made and leave its sources open)."""
        await self._close_replaced()
        if self._running:
            await super().aclose()
            return
        self._room.off("connection_state_changed", self._on_connection_state_changed)
        await self._audio_recv.aclose()
        await aio.cancel_and_wait(*self._tasks)
        await self._av_sync.aclose()
        await self._audio_source.aclose()
        await self._video_source.aclose()

    @property
    def audio_source(self) -> rtc.AudioSource:
        """The audio source the runner publishes (for its queue, in tests and metrics)."""
        return self._audio_source

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop_queued_media(self) -> None:
        self._audio_source.clear_queue()
        queue = self._av_sync._video_queue
        while not queue.empty():
            queue.get_nowait()
            queue.task_done()

    def _on_clear_buffer(self) -> None:
        """Interruption: stop the sound now and report the position heard (synchronously, so no
        frame of the cut speech is counted after it)."""
        try:
            heard = max(0.0, self._playback_position - self._audio_source.queued_duration)
            playing = self._audio_playing
            self._interruptions += 1
            self._stale_video = _MAX_STALE_FRAMES if self._knows_speech else 1
            self._playback_position = 0.0
            self._audio_playing = False
            self._drop_queued_media()
            cleared = self._video_gen.clear_buffer()
            if asyncio.iscoroutine(cleared):
                self._spawn(cleared)
            if playing:
                notify = self._audio_recv.notify_playback_finished(playback_position=heard, interrupted=True)
                if asyncio.iscoroutine(notify):
                    self._spawn(notify)
        except Exception:
            _LOG.exception("vlogger avatar: handling an interruption failed")

    async def _playback_started(self, after_s: float) -> None:
        """Tell the agent its speech started playing, once the silence before it has played."""
        await asyncio.sleep(after_s)
        started = self._audio_recv.notify_playback_started()
        if asyncio.iscoroutine(started):
            await started

    def _segment_end(self) -> None:
        if not self._audio_playing:
            return
        notify = self._audio_recv.notify_playback_finished(
            playback_position=self._playback_position, interrupted=False
        )
        self._audio_playing = False
        self._playback_position = 0.0
        if asyncio.iscoroutine(notify):
            self._spawn(notify)  # never block the video on the agent's answer

    def _is_stale(self) -> bool:
        """Whether the video frame just yielded after an interruption shows the cut speech: with
        a ``VloggerVideoGenerator``, while its motion is still speaking and the agent has sent
        no new speech; with another generator, the one frame it drew ahead."""
        if self._audio_playing:
            return False  # new speech came: its frames are not stale
        if not self._knows_speech:
            return True
        return self._last_drawn is not None and self._last_drawn.motion.speaking

    async def _forward_video(self) -> None:
        """The runner's forwarding loop (publish on the first frame, count the audio pushed, end
        segments), with pushes that straddle an interruption left out of every segment."""
        try:
            async for frame in self._video_gen:
                if isinstance(frame, AudioSegmentEnd):
                    self._segment_end()
                    continue
                if isinstance(frame, rtc.VideoFrame) and self._stale_video > 0:
                    if self._is_stale():
                        self._stale_video -= 1
                        continue
                    self._stale_video = 0
                if not self._video_publication:
                    await self._publish_track()
                interruptions = self._interruptions
                starts = (
                    isinstance(frame, rtc.AudioFrame)
                    and self._playback_position == 0.0
                    and frame.duration > 0.0
                )
                if starts and self._audio_delay_s > 0.0 and isinstance(frame, rtc.AudioFrame):
                    await self._av_sync.push(_silence(frame, self._audio_delay_s))
                await self._av_sync.push(frame)
                if interruptions != self._interruptions:
                    self._drop_queued_media()  # cut speech that got in after the clear
                    continue
                if isinstance(frame, rtc.AudioFrame):
                    if starts:
                        self._spawn(self._playback_started(self._audio_delay_s))
                    self._playback_position += frame.duration
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOG.exception("vlogger avatar: forwarding the avatar's frames failed")


def _silence(like: rtc.AudioFrame, seconds: float) -> rtc.AudioFrame:
    """``seconds`` of silence at ``like``'s rate and channel count."""
    n = max(1, round(seconds * like.sample_rate))
    return rtc.AudioFrame(bytes(2 * n * like.num_channels), like.sample_rate, like.num_channels, n)
