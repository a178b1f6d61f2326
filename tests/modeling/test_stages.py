import pytest

from detkit.modeling import stages
from detkit.modeling.stages import record_stages, stage


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(stages.time, "perf_counter", fake)
    return fake


def test_nothing_is_recorded_without_a_recorder(clock):
    with record_stages() as recorder:
        pass
    with stage("backbone"):
        clock.advance(1.0)
    assert dict(recorder.seconds) == {}


def test_nested_stage_time_is_charged_to_the_inner_stage_only(clock):
    with record_stages() as recorder:
        with stage("roi_heads"):
            clock.advance(2.0)
            with stage("postprocess"):
                clock.advance(5.0)
            clock.advance(1.0)
        clock.advance(7.0)  # outside every stage: nobody's
    assert dict(recorder.seconds) == {"roi_heads": 3.0, "postprocess": 5.0}


def test_repeated_stages_accumulate(clock):
    with record_stages() as recorder:
        for _ in range(3):
            with stage("backbone"):
                clock.advance(0.5)
    assert recorder.seconds["backbone"] == 1.5
