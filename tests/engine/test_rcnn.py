"""R-CNN's stages: outputs on disk, skipped when current, recomputed when an input changes."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from detkit.engine.rcnn import STAGES_FILE
from detkit.engine.train import train


def stage_log(run_dir):
    return json.loads((run_dir / STAGES_FILE).read_text())


@pytest.fixture(scope="module")
def trained_run(tiny_rcnn):
    return train(tiny_rcnn)


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A private copy of the trained run to resume with changes."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, copy)
    return copy


def test_stages_write_outputs(trained_run):
    run = trained_run.run_dir
    for name in ("config.json", "cnn.pt", "svms.pt", "regressors.pt", "best.pt", "last.pt", STAGES_FILE):
        assert (run / name).is_file(), name
    log = stage_log(run)
    assert set(log) >= {"proposals", "finetune", "features", "svms", "regressors", "evaluate"}
    assert log["features"]["cache_bytes"] > 0 and len(list((run / "features").iterdir())) == 1
    assert {"AP", "AP50"} <= set(trained_run.metrics)


def test_a_rerun_skips_current_stages(tiny_rcnn, run_copy):
    first = stage_log(run_copy)
    train(tiny_rcnn, resume_from=run_copy)
    second = stage_log(run_copy)
    for stage in ("finetune", "features", "svms", "regressors"):
        assert second[stage] == first[stage], f"{stage} ran again although current"


def test_a_changed_svm_setting_reruns_the_svms_only(tiny_rcnn, run_copy):
    first = stage_log(run_copy)
    changed = replace(tiny_rcnn, model=replace(tiny_rcnn.model, rcnn=replace(tiny_rcnn.model.rcnn, svm_l2=1e-2)))
    train(changed, resume_from=run_copy)
    second = stage_log(run_copy)
    assert second["features"] == first["features"] and second["finetune"] == first["finetune"]
    assert second["svms"]["key"] != first["svms"]["key"]


def test_a_changed_cnn_replaces_the_feature_cache(tiny_rcnn, run_copy):
    old_folder = next((run_copy / "features").iterdir())
    changed = replace(tiny_rcnn, model=replace(tiny_rcnn.model, rcnn=replace(tiny_rcnn.model.rcnn, finetune_iters=2)))
    train(changed, resume_from=run_copy)
    folders = list((run_copy / "features").iterdir())
    assert len(folders) == 1 and folders[0] != old_folder and not old_folder.exists()
    assert not stage_log(run_copy)["features"]["key"].startswith(old_folder.name)


def test_a_replaced_training_image_invalidates_the_features(tiny_rcnn, run_copy):
    import os

    first = stage_log(run_copy)
    image = next(Path(tiny_rcnn.data.train_images).iterdir())
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # as if rewritten
    try:
        train(tiny_rcnn, resume_from=run_copy)
    finally:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert stage_log(run_copy)["features"]["key"] != first["features"]["key"]
