import pytest
import torch

from detkit.engine.benchmark import timing
from detkit.engine.benchmark.timing import Latency, stage_breakdown, time_models, time_repeatedly, warm_up
from detkit.modeling import stages
from detkit.modeling.stages import stage

CPU = torch.device("cpu")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", fake)  # the same time module the stage recorder reads
    assert stages.time is timing.time
    return fake


def test_latency_statistics_by_hand():
    latency = Latency([10.0, 20.0, 30.0, 40.0], images_per_call=2)
    assert latency.p50 == 25.0
    assert latency.p90 == pytest.approx(37.0)  # 30 + 0.7 * 10, numpy's linear interpolation
    assert latency.ms_per_image == 12.5 and latency.images_per_second == 80.0


def test_passes_stop_only_at_a_pass_boundary_once_the_budget_is_spent(clock):
    seen = []

    def call(name: str, seconds: float):
        def run():
            seen.append(name)
            clock.now += seconds

        return run

    calls = [call("a", 1.0), call("b", 2.0)]
    times = time_repeatedly(calls, CPU, runs=10, max_seconds=4.0)
    assert times == pytest.approx([1000.0, 2000.0, 1000.0, 2000.0])  # 3 s after one pass, 6 s after two: stop
    assert seen == ["a", "b", "a", "b"]
    seen.clear()
    assert len(time_repeatedly(calls, CPU, runs=10, max_seconds=0.0)) == 2  # one full pass always runs
    warm_up(calls, passes=2)
    assert seen == ["a", "b"] + ["a", "b"] * 2


def test_stage_breakdown_is_per_image_and_calls_unclaimed_time_other(clock):
    def model_call():
        clock.now += 0.5  # glue outside any stage
        with stage("backbone"):
            clock.now += 2.0
            with stage("postprocess"):
                clock.now += 1.0

    split = stage_breakdown([model_call, model_call], CPU, num_images=4)
    assert split == pytest.approx({"other": 250.0, "backbone": 1000.0, "postprocess": 500.0})


def test_models_take_turns():
    order = []

    class Recorder(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, images):
            order.append(self.name)

    times = time_models({"a": Recorder("a"), "b": Recorder("b")}, [torch.zeros(3, 4, 4)], runs=2, warmup=1, device=CPU)
    assert order == ["a", "b"] * 3 and all(len(t) == 2 for t in times.values())
