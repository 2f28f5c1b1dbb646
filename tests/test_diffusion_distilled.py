"""The shipped distilled student beats its teacher run at the same step count on held-out frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.render.dataset import build_generated, load_shards
from training.render.evaluate import l1, render_stream, ssim
from vlogger.engines.backends import make_runner
from vlogger.engines.render.diffusion import TEST_MODEL

TEACHER = TEST_MODEL.with_name("test_renderer_teacher.onnx")


def test_student_beats_teacher_at_its_step_count(tmp_path: Path) -> None:
    student, teacher = make_runner(TEST_MODEL), make_runner(TEACHER)
    meta = json.loads(student.metadata["vlogger_renderer"])
    k = meta["sampler"]["steps"]
    assert meta["sampler"]["distilled"] and k == 1
    assert "TEST MODEL" in meta["label"]
    # held-out frames: a motion seed the training never saw
    shard = load_shards([build_generated(tmp_path, frames=40, size=32, seed=1234, split="test")])[0]
    real = shard["frames"]
    scores = {}
    for name, runner in (("student", student), ("teacher", teacher)):
        out = render_stream(runner, shard, k)
        scores[name] = (
            np.mean([l1(a, b) for a, b in zip(out, real, strict=True)]),
            np.mean([ssim(a, b) for a, b in zip(out, real, strict=True)]),
        )
    assert scores["student"][0] < 0.8 * scores["teacher"][0], scores
    assert scores["student"][1] > scores["teacher"][1], scores
    # more teacher steps help the teacher (the schedule is sane)
    many = render_stream(teacher, shard, 4)
    assert np.mean([l1(a, b) for a, b in zip(many, real, strict=True)]) < scores["teacher"][0]
