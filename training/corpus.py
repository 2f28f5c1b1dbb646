"""A motion corpus on disk: shards of (16 kHz audio, 25 fps motion targets) items plus a manifest.

Layout of a corpus folder::

    manifest.json        {"version", "fps", "sample_rate", "motion_dim", "config", "shards": [...]}
    shard-00000.npz      items 0..n-1 of shard 0, as concatenated arrays + offsets
    shard-00001.npz      ...

Each shard holds ``audio16k`` float32 (all items' mono 16 kHz audio concatenated), ``audio_offsets``
int64 (n+1), ``motion`` float32 (F, 174) = 15 expression + 9 head + 150 body (75 x 2, row-major),
25 fps, frame i covering audio [i/25, (i+1)/25); ``motion_offsets`` int64 (n+1); ``source`` str (n,)
(``"piper"``, ``"espeak:<voice>"``, ``"clip:<name>"``); ``text`` str (n,); ``weight`` float32 (n,);
``has_face`` bool (n,); ``target_mask`` float32 (n, 174) (1 = supervised dim); ``augment`` str (n,)
(JSON list of the augmentations applied to the stored audio). Items always satisfy
``frames == ceil(samples / 640)``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlogger.engines.types import BODY_KEYPOINTS, EXPRESSION_NAMES, HEAD_DIMS

__all__ = [
    "BODY_SLICE",
    "CORPUS_VERSION",
    "EXPR_SLICE",
    "FPS",
    "HEAD_SLICE",
    "MOTION_DIM",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "Corpus",
    "CorpusItem",
    "frames_for_samples",
    "motion_from_frames",
    "read_manifest",
    "shard_path",
    "write_manifest",
    "write_shard",
]

CORPUS_VERSION = 1
FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
N_EXPR = len(EXPRESSION_NAMES)
MOTION_DIM = N_EXPR + HEAD_DIMS + 2 * BODY_KEYPOINTS  # 174
EXPR_SLICE = slice(0, N_EXPR)
HEAD_SLICE = slice(N_EXPR, N_EXPR + HEAD_DIMS)
BODY_SLICE = slice(N_EXPR + HEAD_DIMS, MOTION_DIM)


def frames_for_samples(n_samples: int) -> int:
    """Number of 25 fps frames that cover ``n_samples`` at 16 kHz: ``ceil(n / 640)``."""
    return math.ceil(int(n_samples) / SAMPLES_PER_FRAME)


def motion_from_frames(frames: Sequence[object]) -> np.ndarray:
    """(len(frames), 174) float32 from ``MotionFrame`` s (expression, head, body flattened)."""
    out = np.zeros((len(frames), MOTION_DIM), dtype=np.float32)
    for i, f in enumerate(frames):
        out[i, EXPR_SLICE] = f.expression  # type: ignore[attr-defined]
        out[i, HEAD_SLICE] = f.head  # type: ignore[attr-defined]
        out[i, BODY_SLICE] = np.asarray(f.body, dtype=np.float32).reshape(-1)  # type: ignore[attr-defined]
    return out


@dataclass
class CorpusItem:
    """One utterance: its audio and per-frame motion targets."""

    audio16k: np.ndarray
    """Mono float32 audio at 16 kHz, shape (n,)."""
    motion: np.ndarray
    """float32 (ceil(n / 640), 174) targets at 25 fps (see the module docstring for the layout)."""
    source: str
    """Where it came from: ``"piper"``, ``"espeak:<voice>"``, ``"clip:<name>"``."""
    text: str = ""
    """What is said (empty when unknown)."""
    weight: float = 1.0
    """Sampling / loss weight of the item."""
    target_mask: np.ndarray = field(default_factory=lambda: np.ones(MOTION_DIM, dtype=np.float32))
    """float32 (174,): 1 where the target dim is supervised, 0 where it is not."""
    has_face: bool = False
    """Whether the targets were fitted from a real face (real clips)."""
    augment: str = "[]"
    """JSON list of the augmentations applied to ``audio16k`` after the targets were made."""

    @property
    def n_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def duration(self) -> float:
        return self.audio16k.shape[0] / SAMPLE_RATE


def shard_path(folder: str | Path, index: int) -> Path:
    return Path(folder) / f"shard-{index:05d}.npz"


def write_shard(path: str | Path, items: Sequence[CorpusItem]) -> int:
    """Write items to one ``.npz`` shard atomically (temp file + rename). Returns the item count.

    Raises ValueError when an item's motion does not cover its audio (``frames != ceil(n/640)``) or
    has the wrong width.
    """
    path = Path(path)
    a_off = [0]
    m_off = [0]
    for k, it in enumerate(items):
        a = np.asarray(it.audio16k)
        m = np.asarray(it.motion)
        if a.ndim != 1:
            raise ValueError(f"item {k}: audio must be mono (n,), got {a.shape}")
        if m.ndim != 2 or m.shape[1] != MOTION_DIM:
            raise ValueError(f"item {k}: motion must be (F, {MOTION_DIM}), got {m.shape}")
        if m.shape[0] != frames_for_samples(a.shape[0]):
            raise ValueError(
                f"item {k}: {m.shape[0]} frames for {a.shape[0]} samples "
                f"(expected {frames_for_samples(a.shape[0])})"
            )
        a_off.append(a_off[-1] + a.shape[0])
        m_off.append(m_off[-1] + m.shape[0])
    audio = (
        np.concatenate([np.asarray(it.audio16k, np.float32) for it in items])
        if items
        else np.zeros(0, np.float32)
    )
    motion = (
        np.concatenate([np.asarray(it.motion, np.float32) for it in items])
        if items
        else np.zeros((0, MOTION_DIM), np.float32)
    )
    arrays: dict[str, np.ndarray] = {
        "audio16k": audio.astype(np.float32),
        "audio_offsets": np.asarray(a_off, np.int64),
        "motion": motion.astype(np.float32),
        "motion_offsets": np.asarray(m_off, np.int64),
        "source": np.asarray([it.source for it in items], dtype=str),
        "text": np.asarray([it.text for it in items], dtype=str),
        "weight": np.asarray([it.weight for it in items], np.float32),
        "has_face": np.asarray([it.has_face for it in items], bool),
        "target_mask": np.asarray(
            [np.asarray(it.target_mask, np.float32).reshape(MOTION_DIM) for it in items], np.float32
        ).reshape(len(items), MOTION_DIM),
        "augment": np.asarray([it.augment for it in items], dtype=str),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)
    return len(items)


def read_manifest(folder: str | Path) -> dict:
    p = Path(folder) / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else {}


def write_manifest(folder: str | Path, manifest: dict) -> None:
    """Write ``manifest.json`` atomically."""
    p = Path(folder) / "manifest.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"manifest.json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, p)


class _Shard:
    def __init__(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as z:
            self.arrays = {k: z[k] for k in z.files}
        self.n = int(self.arrays["audio_offsets"].shape[0] - 1)

    def item(self, k: int) -> CorpusItem:
        a = self.arrays
        a0, a1 = a["audio_offsets"][k], a["audio_offsets"][k + 1]
        m0, m1 = a["motion_offsets"][k], a["motion_offsets"][k + 1]
        n = self.n
        return CorpusItem(
            audio16k=a["audio16k"][a0:a1],
            motion=a["motion"][m0:m1],
            source=str(a["source"][k]),
            text=str(a["text"][k]) if "text" in a else "",
            weight=float(a["weight"][k]) if "weight" in a else 1.0,
            target_mask=(a["target_mask"][k] if "target_mask" in a else np.ones(MOTION_DIM, np.float32)),
            has_face=bool(a["has_face"][k]) if "has_face" in a else False,
            augment=str(a["augment"][k]) if "augment" in a and a["augment"].shape[0] == n else "[]",
        )


class Corpus:
    """Read a corpus folder: ``len(corpus)``, ``corpus[i] -> CorpusItem``, iteration.

    Shards listed in ``manifest.json`` are used (else every ``shard-*.npz`` in the folder). All
    shards are loaded into memory on first access (a 2-hour corpus is about 0.5 GB);
    ``sources`` and ``items_per_shard`` come from the shards themselves.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no corpus folder at {self.path}")
        self.manifest = read_manifest(self.path)
        names = [s["file"] for s in self.manifest.get("shards", [])]
        if not names:
            names = sorted(p.name for p in self.path.glob("shard-*.npz"))
        self._files = [self.path / n for n in names if (self.path / n).exists()]
        self._shards: list[_Shard] | None = None
        self._index: list[tuple[int, int]] = []

    def _load(self) -> list[_Shard]:
        if self._shards is None:
            self._shards = [_Shard(p) for p in self._files]
            self._index = [(s, k) for s, sh in enumerate(self._shards) for k in range(sh.n)]
        return self._shards

    def __len__(self) -> int:
        self._load()
        return len(self._index)

    def __getitem__(self, i: int) -> CorpusItem:
        shards = self._load()
        if i < 0:
            i += len(self._index)
        if not 0 <= i < len(self._index):
            raise IndexError(i)
        s, k = self._index[i]
        return shards[s].item(k)

    def __iter__(self) -> Iterator[CorpusItem]:
        for i in range(len(self)):
            yield self[i]

    @property
    def sources(self) -> list[str]:
        """The source of each item, in order."""
        return [str(x) for sh in self._load() for x in sh.arrays["source"]]

    def total_seconds(self) -> float:
        return sum(float(sh.arrays["audio16k"].shape[0]) for sh in self._load()) / SAMPLE_RATE
