"""The /ws protocol's parsing and the buffers between pipeline and tracks (no network)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from vlogger.runtime.pipeline import AudioSegment
from vlogger.runtime.protocol import (
    ERROR_CODES,
    AudioEnd,
    AudioStart,
    AvatarSwitch,
    Interrupt,
    Offer,
    ProtocolError,
    Say,
    parse_message,
)
from vlogger.runtime.tracks import AudioTimeline, FrameQueue

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


def _err(raw: str | bytes, **kw: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_message(raw, **kw)
    assert info.value.code in ERROR_CODES
    assert info.value.message
    return info.value


def test_valid_messages_parse_to_typed_requests() -> None:
    assert parse_message(json.dumps({"type": "offer", "sdp": SDP})) == Offer(SDP)
    assert parse_message('{"type":"say","id":"u1","text":"Hi there."}') == Say("Hi there.", "u1")
    assert parse_message('{"type":"say","text":"Hi"}') == Say("Hi", None)
    assert parse_message('{"type":"interrupt"}') == Interrupt()
    assert parse_message('{"type":"audio.start","id":"a1","sample_rate":16000}') == AudioStart(16000, "a1")
    assert parse_message('{"type":"audio.start"}') == AudioStart(16000, None)
    assert parse_message('{"type":"audio.end","id":"a1"}') == AudioEnd("a1")
    png = b"\x89PNG\r\n\x1a\nfake"
    msg = parse_message(json.dumps({"type": "avatar", "image": base64.b64encode(png).decode()}))
    assert msg == AvatarSwitch(png)
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    assert parse_message(json.dumps({"type": "avatar", "image": data_url})) == AvatarSwitch(png)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        ('"say"', "bad_json"),
        ('{"text":"hi"}', "bad_message"),
        ('{"type":7}', "bad_message"),
        ('{"type":"dance"}', "unknown_type"),
        ('{"type":"offer"}', "bad_message"),
        ('{"type":"offer","sdp":"hello, I am not SDP"}', "bad_sdp"),
        ('{"type":"offer","sdp":12}', "bad_message"),
        ('{"type":"say"}', "bad_message"),
        ('{"type":"say","text":["a"]}', "bad_message"),
        ('{"type":"say","text":"   "}', "bad_text"),
        ('{"type":"say","text":"?!..."}', "bad_text"),
        ('{"type":"say","text":"hi","id":""}', "bad_message"),
        ('{"type":"say","text":"hi","id":"has space"}', "bad_message"),
        ('{"type":"say","text":"hi","id":5}', "bad_message"),
        ('{"type":"audio.start","sample_rate":12345}', "bad_message"),
        ('{"type":"audio.start","sample_rate":"16000"}', "bad_message"),
        ('{"type":"audio.start","sample_rate":true}', "bad_message"),
        ('{"type":"audio.start","encoding":"mp3"}', "bad_message"),
        ('{"type":"avatar","image":"***not base64***"}', "bad_image"),
        ('{"type":"avatar","image":""}', "bad_image"),
        ('{"type":"avatar"}', "bad_message"),
    ],
)
def test_bad_messages_get_named_error_codes(raw: str | bytes, code: str) -> None:
    assert _err(raw).code == code


def test_say_limits_and_id_echo() -> None:
    assert parse_message(json.dumps({"type": "say", "text": "a" * 20_000})) == Say("a" * 20_000)
    e = _err(json.dumps({"type": "say", "id": "long", "text": "a" * 20_001}))
    assert e.code == "bad_text" and e.id == "long" and "20,001" in e.message
    assert _err(json.dumps({"type": "say", "text": "ab"}), max_say_chars=1).code == "bad_text"
    deep = "[" * 100_000 + "]" * 100_000
    assert _err(deep).code == "bad_json"
    assert "x" * 41 not in _err(json.dumps({"type": "x" * 5000})).message


def test_audio_timeline_places_mixes_marks_and_flushes() -> None:
    tl = AudioTimeline()
    tl.schedule(900, np.full(960, 0.25, np.float32))
    tl.mark(900, "u1", "started")
    tl.mark(1859, "u1", "done")
    block, marks = tl.read(0, 960)
    assert np.all(block[:900] == 0) and np.allclose(block[900:], 0.25) and marks == [("u1", "started")]
    assert tl.buffered_seconds() == pytest.approx(900 / 48000)
    block, marks = tl.read(960, 960)
    assert np.allclose(block[:900], 0.25) and np.all(block[900:] == 0) and marks == [("u1", "done")]
    assert tl.end_sample() == 1920 and tl.buffered_seconds() == 0.0
    # overlapping segments add; a segment placed in the past loses only its past head
    tl.schedule(2000, np.full(100, 0.1, np.float32))
    tl.schedule(2050, np.full(100, 0.1, np.float32))
    block, _ = tl.read(1920, 960)
    assert (
        np.allclose(block[80:130], 0.1)
        and np.allclose(block[130:180], 0.2)
        and np.allclose(block[180:230], 0.1)
    )
    tl.schedule(2500, np.ones(500, np.float32))
    assert tl.read(2880, 960)[0].max() == 1.0  # 2880..2999 of the late segment remain
    # flush drops everything not yet read
    tl.schedule(4000, np.ones(960, np.float32))
    tl.mark(4000, "u2", "started")
    tl.flush()
    block, marks = tl.read(3840, 960 * 2)
    assert block.max() == 0.0 and marks == []


def test_frame_queue_hands_out_frames_by_index() -> None:
    q = FrameQueue(capacity=4)
    for i in range(6):
        q.put(i, i)
    assert len(q) == 4  # oldest dropped
    assert q.take(3) == (3, 3)
    assert q.take(3) == (4, 4)  # 3 is gone: the next later frame
    assert q.take(9) is None
    q.put(10, 10)
    q.flush()
    assert q.take(0) is None


def test_audio_segment_checks_pcm_and_streams_before_the_end() -> None:
    seg = AudioSegment(16000, max_seconds=1.0)
    with pytest.raises(ValueError, match="even"):
        seg.append(b"\x00\x01\x02")
    pcm = (np.sin(np.arange(8000) / 10) * 16000).astype("<i2")
    seg.append(pcm.tobytes())  # 0.5 s: more than the 0.2 s pre-buffer
    chunks = seg.chunks(0.2, lambda: True)
    first = next(chunks)  # available although the segment is still open
    assert first.sample_rate == 16000 and first.pts == 0.0 and first.num_samples == 8000
    assert np.allclose(first.pcm, pcm / 32768.0)
    with pytest.raises(ValueError, match="longer"):
        seg.append(np.zeros(9000, "<i2").tobytes())
    seg.append(np.zeros(1600, "<i2").tobytes())
    seg.close()
    rest = list(chunks)
    assert [c.pts for c in rest] == [0.5] and rest[0].num_samples == 1600
