"""The shipped distilled students beat their teacher run at the same step count on held-out frames."""

from __future__ import annotations

import json

import pytest

from training.render.dataset import build_generated, load_shards
from training.render.evaluate import render_stream, score
from vlogger.engines.backends import make_runner
from vlogger.engines.render.diffusion import TEST_MODEL

TEACHER = TEST_MODEL.with_name("test_renderer_teacher.onnx")
STUDENTS = {
    1: TEST_MODEL,
    2: TEST_MODEL.with_name("test_renderer_2step.onnx"),
    4: TEST_MODEL.with_name("test_renderer_4step.onnx"),
}


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # a motion seed the training never saw
    path = build_generated(tmp_path_factory.mktemp("held"), frames=40, size=32, seed=1234, split="test")
    return load_shards([path])[0]


def _scores(runner: object, shard: dict, k: int) -> tuple[float, float]:
    s = score(render_stream(runner, shard, k), shard, None)  # mean L1 and SSIM against the real frames
    return s["l1"], s["ssim"]


@pytest.mark.parametrize("k", sorted(STUDENTS))
def test_student_beats_teacher_at_its_step_count(k: int, held_out: dict) -> None:
    student, teacher = make_runner(STUDENTS[k]), make_runner(TEACHER)
    meta = json.loads(student.metadata["vlogger_renderer"])
    assert meta["sampler"]["distilled"] and meta["sampler"]["steps"] == k
    assert "TEST MODEL" in meta["label"]
    s, t = _scores(student, held_out, k), _scores(teacher, held_out, k)
    assert s[0] < 0.95 * t[0] and s[1] > t[1], {"student": s, "teacher": t}


def test_more_teacher_steps_help_the_teacher(held_out: dict) -> None:
    teacher = make_runner(TEACHER)
    l1s = [_scores(teacher, held_out, k)[0] for k in (1, 2, 4)]
    assert l1s[0] > l1s[1] > l1s[2], l1s  # the schedule is sane
