"""The ``/ws`` protocol: parsing and checking client messages, building server events.

Every client message is a JSON object with a ``type``; binary frames carry ``audio.*`` PCM. A bad
message never raises past :func:`parse_message`: it becomes a :class:`ProtocolError` with a code
from :data:`ERROR_CODES` that the session sends back as an ``error`` event. See docs/protocol.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ERROR_CODES",
    "MAX_SDP_BYTES",
    "UTTERANCE_STATES",
    "AudioEnd",
    "AudioStart",
    "AvatarSwitch",
    "ClientMessage",
    "Interrupt",
    "Offer",
    "ProtocolError",
    "Say",
    "error_event",
    "event",
    "parse_message",
]

#: Error codes of ``{"type":"error","code":...}`` and what each means.
ERROR_CODES: dict[str, str] = {
    "bad_json": "a text message is not a JSON object",
    "unknown_type": "the message's type is not one the server knows",
    "bad_message": "a field is missing or has the wrong type or value",
    "bad_sdp": "the offer's SDP is not SDP, or negotiation with it failed",
    "bad_state": "the message does not fit the session's state (a second offer, audio.end without start)",
    "bad_text": "say text is empty, has nothing to speak, or is longer than the limit",
    "queue_full": "the session already holds the maximum of unfinished utterances",
    "bad_audio": "binary PCM outside an audio segment, an odd byte count, or a segment too long",
    "audio_full": "the session holds its maximum of unplayed agent audio; the segment was closed",
    "bad_image": "the avatar photo is not base64, not an image, or shows no face",
    "server_busy": "the server holds its maximum of sessions (the socket is closed after this)",
    "slow_client": "the client does not read its events (the socket is closed after this)",
    "internal": "an unexpected server fault; the session goes on",
    "unknown_session": "attach names no open session",
    "not_attached": "an agent sent a session message before attach or create",
    "asr_busy": "speech recognition fell behind and dropped an utterance",
    "brain_failed": "the built-in brain could not answer (its server failed or is unreachable)",
}

#: States of ``{"type":"utterance","state":...}`` in the order they happen.
UTTERANCE_STATES = ("queued", "started", "done", "interrupted")

_ID = re.compile(r"[\w.:\-]{1,64}")
#: Longest SDP offer accepted: a browser's offer with audio, video and all candidates is 3-10 kB;
#: aiortc parses SDP on the event loop at about 0.12 ms per kB, so this bounds that to ~8 ms.
MAX_SDP_BYTES = 64 * 1024
_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class ProtocolError(Exception):
    """A client message the server refuses; becomes an ``error`` event."""

    def __init__(self, code: str, message: str, id: str | None = None) -> None:
        super().__init__(message)
        assert code in ERROR_CODES, code
        self.code = code
        self.message = message
        self.id = id

    def to_event(self) -> dict[str, Any]:
        return error_event(self.code, self.message, self.id)


@dataclass(frozen=True)
class Offer:
    """``{"type":"offer","sdp":...}``: the client's SDP offer with all ICE candidates."""

    sdp: str


@dataclass(frozen=True)
class Say:
    """``{"type":"say","id":"u1","text":"..."}``."""

    text: str
    id: str | None = None


@dataclass(frozen=True)
class Interrupt:
    """``{"type":"interrupt"}``: stop the current and queued speech."""


@dataclass(frozen=True)
class AudioStart:
    """``{"type":"audio.start","id":"a1","sample_rate":16000}``: 16-bit mono PCM follows."""

    sample_rate: int
    id: str | None = None


@dataclass(frozen=True)
class AudioEnd:
    """``{"type":"audio.end","id":"a1"}``: the open audio segment is complete."""

    id: str | None = None


@dataclass(frozen=True)
class AvatarSwitch:
    """``{"type":"avatar","image":"<base64>"}``: decoded photo bytes."""

    image: bytes


ClientMessage = Offer | Say | Interrupt | AudioStart | AudioEnd | AvatarSwitch


def event(type_: str, **fields: Any) -> dict[str, Any]:
    """A server event as a dict (``type`` first); ``None`` fields are left out."""
    out: dict[str, Any] = {"type": type_}
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


def error_event(code: str, message: str, id: str | None = None) -> dict[str, Any]:
    return event("error", code=code, message=message, id=id)


def _id(obj: dict[str, Any]) -> str | None:
    value = obj.get("id")
    if value is None:
        return None
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ProtocolError(
            "bad_message", "id must be 1 to 64 characters of letters, digits, '_', '-', '.', ':'"
        )
    return value


def _str_field(
    obj: dict[str, Any], name: str, type_: str, id: str | None = None, code: str = "bad_message"
) -> str:
    value = obj.get(name)
    if value is None:
        raise ProtocolError("bad_message", f"{type_} needs a {name!r} field", id)
    if not isinstance(value, str):
        raise ProtocolError("bad_message", f"{type_}.{name} must be a string", id)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON may escape a lone surrogate ("\ud800")
        raise ProtocolError(
            code, f"{type_}.{name} is not valid Unicode (a lone surrogate at character {exc.start})", id
        ) from exc
    return value


def parse_message(
    raw: str | bytes, max_say_chars: int = 20_000, max_sdp_bytes: int = MAX_SDP_BYTES
) -> ClientMessage:
    """Check one text message; :class:`ProtocolError` names what is wrong. Never raises anything
    else, whatever ``raw`` holds (a property test feeds it arbitrary text)."""
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("bad_json", "message is not UTF-8 text") from exc
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # ValueError: also a number of over 4,300 digits
        reason = str(exc)
        reason = reason if len(reason) <= 120 else reason[:120] + "..."
        raise ProtocolError("bad_json", f"message is not valid JSON ({reason})") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "message must be a JSON object")
    type_ = obj.get("type")
    if not isinstance(type_, str):
        raise ProtocolError("bad_message", "message needs a string 'type'")
    if type_ == "offer":
        sdp = _str_field(obj, "sdp", "offer", code="bad_sdp")
        if len(sdp) > max_sdp_bytes:
            raise ProtocolError(
                "bad_sdp", f"offer.sdp is {len(sdp):,} characters; the limit is {max_sdp_bytes:,}"
            )
        if not sdp.lstrip().startswith("v=0") or "\nm=" not in sdp.replace("\r\n", "\n"):
            raise ProtocolError("bad_sdp", "offer.sdp is not an SDP session description (v=0 ... m=...)")
        return Offer(sdp=sdp)
    if type_ == "say":
        uid = _id(obj)
        text = _str_field(obj, "text", "say", uid, code="bad_text")
        if len(text) > max_say_chars:
            raise ProtocolError(
                "bad_text", f"say text is {len(text):,} characters; the limit is {max_say_chars:,}", uid
            )
        if not text.strip():
            raise ProtocolError("bad_text", "say text is empty", uid)
        if not re.search(r"\w", text):
            raise ProtocolError("bad_text", "say text has nothing to speak (no letters or digits)", uid)
        return Say(text=text, id=uid)
    if type_ == "interrupt":
        return Interrupt()
    if type_ == "audio.start":
        uid = _id(obj)
        rate = obj.get("sample_rate", 16000)
        if isinstance(rate, bool) or not isinstance(rate, int) or rate not in _SAMPLE_RATES:
            raise ProtocolError(
                "bad_message",
                f"audio.start.sample_rate must be one of {', '.join(map(str, _SAMPLE_RATES))}",
                uid,
            )
        encoding = obj.get("encoding", "pcm_s16le")
        if encoding != "pcm_s16le":
            raise ProtocolError("bad_message", "audio.start.encoding must be 'pcm_s16le'", uid)
        return AudioStart(sample_rate=rate, id=uid)
    if type_ == "audio.end":
        return AudioEnd(id=_id(obj))
    if type_ == "avatar":
        data = _str_field(obj, "image", "avatar", code="bad_image")
        if data.startswith("data:"):
            data = data.partition(",")[2]
        try:
            image = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("bad_image", "avatar.image is not base64") from exc
        if not image:
            raise ProtocolError("bad_image", "avatar.image is empty")
        return AvatarSwitch(image=image)
    shown = type_ if len(type_) <= 40 else type_[:40] + "..."
    raise ProtocolError("unknown_type", f"unknown message type {shown!r}")
