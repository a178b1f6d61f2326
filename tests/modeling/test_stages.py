import time

from detkit.modeling.stages import record_stages, stage


def test_stages_are_free_and_unrecorded_without_a_recorder():
    with stage("backbone"):
        pass  # no recorder: nothing to check but that it runs


def test_nested_stage_time_is_charged_to_the_inner_stage_only():
    with record_stages() as recorder:
        with stage("roi_heads"):
            time.sleep(0.02)
            with stage("postprocess"):
                time.sleep(0.05)
            time.sleep(0.02)
    assert set(recorder.seconds) == {"roi_heads", "postprocess"}
    assert 0.05 <= recorder.seconds["postprocess"] < 0.09
    assert 0.04 <= recorder.seconds["roi_heads"] < 0.08  # the 0.05 s inside postprocess is not counted twice


def test_repeated_stages_accumulate_and_the_recorder_ends_with_its_block():
    with record_stages() as recorder:
        for _ in range(3):
            with stage("backbone"):
                time.sleep(0.01)
    with stage("backbone"):
        time.sleep(0.01)
    assert 0.03 <= recorder.seconds["backbone"] < 0.06
