"""Settings of the real-time server (``vlogger serve``): network, limits, pacing, buffers."""

from __future__ import annotations

from dataclasses import dataclass, field

from vlogger.runtime.brains import BrainConfig
from vlogger.runtime.listen import ListenConfig

__all__ = ["ServerConfig"]


@dataclass
class ServerConfig:
    """How ``vlogger serve`` listens, what it accepts and how far its pipeline runs ahead."""

    host: str = "127.0.0.1"
    """Interface to listen on (``0.0.0.0`` exposes the server to the network)."""
    port: int = 8080
    """TCP port of the page, ``/healthz`` and the ``/ws`` WebSocket (0 = any free port)."""
    ice_servers: list[str] = field(default_factory=list)
    """STUN/TURN URLs (``stun:host:port``, ``turn:user:pass@host:port``) given to the server's and
    the page's peer connections. Empty = none: host candidates only, nothing leaves the machine."""
    loopback_ice: bool = False
    """Also offer 127.0.0.1 as an ICE host candidate (same-machine tests; aioice leaves it out)."""
    allowed_origins: list[str] = field(default_factory=list)
    """Extra page origins (``https://app.example``) allowed to open ``/ws`` and ``/agent`` from a
    browser. Always allowed: the server's own page at a loopback name (``127.0.0.1``, ``localhost``,
    ``[::1]``) or at the bind address, with its port; clients that send no ``Origin`` (agents,
    tests) too. ``"*"`` = any. The request's ``Host`` header is never trusted for this."""
    max_message_bytes: int = 8 * 1024 * 1024
    """Largest WebSocket message accepted (photos included); a larger one closes the socket (1009)."""
    max_say_chars: int = 20_000
    """Longest ``say`` text, in characters."""
    max_queued_utterances: int = 32
    """Utterances (``say`` and ``audio.*``) a session holds that are not finished yet; more get
    ``queue_full``."""
    max_sessions: int | None = None
    """Concurrent sessions; a further connection gets ``server_busy`` and is closed. ``None`` =
    what this machine's cores hold at 25 fps for the avatar's video size
    (:func:`~vlogger.runtime.capacity.session_capacity`)."""
    max_audio_segment_s: float = 600.0
    """Longest ``audio.*`` segment, in seconds of audio."""
    max_buffered_audio_s: float = 60.0
    """Agent PCM (``audio.*``) a session holds that the pipeline has not taken yet, in seconds,
    over all its segments (kept as 16-bit at the sender's rate: at most 5.8 MB at 48 kHz).
    PCM past it is refused with ``audio_full`` and its segment is closed (what came plays)."""
    max_sdp_bytes: int = 64 * 1024
    """Longest SDP offer (a browser's is 3-10 kB); a longer one gets ``bad_sdp``."""
    synthesis_ahead_s: float = 3.0
    """Seconds of speech synthesised ahead of playback before the TTS thread waits."""
    synthesis_nice: int = 5
    """How much lower the TTS thread's CPU priority is than rendering's (Linux nice steps; 0 =
    the same). Synthesis runs ahead of playback, so on a full CPU it should wait, not the video:
    a 20,000-character ``say`` otherwise cut a neighbour's fresh frames to 11-14 per second."""
    render_ahead_s: float = 0.08
    """Seconds of video rendered ahead of playback (jitter cushion; speech starts after it)."""
    audio_prebuffer_s: float = 0.2
    """Seconds of ``audio.*`` PCM collected before the segment is scheduled (or ``audio.end``)."""
    stats_period_s: float = 1.0
    """Seconds between ``stats`` events."""
    event_queue_size: int = 256
    """Server events a session may hold for a client that does not read; beyond it the socket
    is closed."""
    keepalive_s: float = 0.5
    """Seconds between WebSocket pings."""
    keepalive_timeout_s: float = 0.8
    """Seconds to wait for a pong: a vanished client (no FIN, no pong) is dropped, and its
    session freed, within ``keepalive_s + keepalive_timeout_s + websocket_close_timeout_s``
    (1.6 s by default). A closed tab or a killed client closes its socket and is freed at once."""
    websocket_close_timeout_s: float = 0.3
    """Seconds the server waits for a client to answer its close frame before dropping the
    connection."""
    render_processes: bool = True
    """Render each session in a worker process of its own (the warp renderer holds the GIL for
    most of a frame, so sessions rendering in threads of one process share one core)."""
    spare_render_processes: int = 1
    """Render processes started ahead, so a new session does not wait for one to start."""
    close_timeout_s: float = 2.0
    """Seconds a closing session may take to free its threads and peer connection."""
    default_image: str | None = None
    """Photo every new session starts with; ``None`` = the shipped portrait."""
    token: str | None = None
    """Access token. Set: ``/ws`` and ``/agent`` need ``Authorization: Bearer T`` (compared in
    constant time) or the login cookie a browser gets from ``/login`` (the one-time link the server
    prints, or ``/login?token=T``). ``None``: ``/agent`` is open to loopback peers only and ``/ws``
    to any client whose ``Origin`` is allowed."""
    brain: BrainConfig = field(default_factory=BrainConfig)
    """What answers a transcript when no agent is attached (``echo`` by default)."""
    listen: ListenConfig = field(default_factory=ListenConfig)
    """Microphone handling: VAD, utterance cutting, barge-in, echo check."""
    listen_enabled: bool = True
    """Transcribe a microphone track when the page sends one (off: it is drained unheard)."""
    agent_event_queue_size: int = 256
    """Events an agent may leave unread before its socket is closed (``slow_client``)."""
    max_agents_per_session: int = 4
    """Agents attached to one session at once."""
