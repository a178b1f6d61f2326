"""What the inference loader and the CPU-thread settings do: folded norms for detect/eval only, the
default thread rule, and the threads a command reports."""

import cv2
import pytest
import torch
from torch import nn

from detkit.checkpoint import Checkpoint, save_checkpoint
from detkit.engine import device
from detkit.engine.device import default_cpu_threads, use_cpu_threads
from detkit.engine.predict import ModelChoice, load_chosen, load_detector
from detkit.pipelines import PIPELINES
from tests.test_checkpoint import small_config

CPU = torch.device("cpu")


@pytest.fixture
def checkpoint_file(tmp_path):
    cfg = small_config()
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_checkpoint(path, Checkpoint(cfg, PIPELINES["faster_rcnn"].build(cfg.model).state_dict(), ["a", "b"], [1, 2]))
    return path


def batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def conv_weights_channels_last(model: nn.Module) -> bool:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return all(conv.weight.is_contiguous(memory_format=torch.channels_last) for conv in convs)


def test_only_the_inference_loaders_fold_norms_and_go_channels_last(checkpoint_file):
    as_saved, _ = load_detector(checkpoint_file, CPU)  # what export and fine-tuning get: the checkpoint's layers
    readied, _, _ = load_chosen(ModelChoice(checkpoint_file, device="cpu", threads=1))
    assert batch_norms(as_saved) > 0 and not conv_weights_channels_last(as_saved)
    assert batch_norms(readied) == 0 and conv_weights_channels_last(readied)
    assert not readied.training and torch.get_num_threads() == 1


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 1), (16, 15)])
def test_default_threads_leave_one_core_free(cores, expected, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "available_cores", lambda: cores)
    assert default_cpu_threads() == expected


def test_omp_num_threads_decides_when_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setattr(device, "available_cores", lambda: 16)  # the rule alone would say 15
    assert default_cpu_threads() == torch.get_num_threads()


def test_threads_apply_to_torch_and_opencv():
    assert use_cpu_threads(1) == 1 and torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
