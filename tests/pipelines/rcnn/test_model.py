from dataclasses import replace

import pytest
import torch

from detkit.config import BackboneConfig, ModelConfig, ProposalConfig, RCNNConfig
from detkit.data.images import image_to_tensor
from detkit.modeling.stages import record_stages
from detkit.pipelines import PIPELINES
from detkit.structures import Detections, Target
from tests.proposals.images import object_boxes, rectangles_image


@pytest.fixture
def rcnn_config(tmp_path) -> ModelConfig:
    return ModelConfig(
        pipeline="rcnn", num_classes=3,
        backbone=BackboneConfig(name="resnet18", fpn=False, returned_stages=(5,)),
        proposals=ProposalConfig(cache_dir=str(tmp_path)),
        rcnn=RCNNConfig(crop_size=32, context_padding=3, score_thresh=0.0),
    )


def build(cfg):
    torch.manual_seed(0)
    return PIPELINES["rcnn"](cfg)


def test_finetune_loss_on_windows_including_an_image_without_objects(rcnn_config):
    model = build(rcnn_config).train()
    images = [image_to_tensor(rectangles_image(96, 128))] * 2
    proposals = torch.tensor([[8.0, 10.0, 52.0, 42.0], [0.0, 0.0, 60.0, 60.0]])
    targets = [
        Target(boxes=torch.from_numpy(object_boxes()), labels=torch.tensor([0, 1, 2]), proposals=proposals),
        Target(proposals=proposals),
    ]
    output = model(images, targets)
    assert set(output.losses) == {"loss_cls"} and output.detections is None
    assert torch.isfinite(output.losses["loss_cls"])
    output.losses["loss_cls"].backward()
    assert model.cnn.classifier.weight.grad is not None


def test_detect_follows_the_contract_with_svms_and_regressors_set(rcnn_config):
    model = build(rcnn_config).eval()
    torch.manual_seed(1)
    model.svm_weight.normal_()
    model.regressor_weight.normal_(std=1e-3)
    image = image_to_tensor(rectangles_image(96, 128))
    with record_stages() as recorder:
        output = model([image])
    assert output.losses == {}
    detections = output.detections[0]
    assert isinstance(detections, Detections) and len(detections) > 0
    assert detections.boxes[:, 2].max() <= 128 and detections.boxes[:, 3].max() <= 96
    assert torch.all(detections.scores[:-1] >= detections.scores[1:]) and detections.scores.max() <= 1
    assert model.tally.images == 1 and model.tally.regions > 0
    assert set(recorder.seconds) == {"proposals", "preprocess", "backbone", "svms", "postprocess"}
    assert all(seconds > 0 for seconds in recorder.seconds.values())


def test_without_regression_boxes_are_the_proposals(rcnn_config):
    model = build(replace(rcnn_config, rcnn=replace(rcnn_config.rcnn, box_regression=False))).eval()
    model.svm_weight.normal_()
    model.regressor_weight.fill_(0.5)  # would move every box, were it used
    image = image_to_tensor(rectangles_image(96, 128))
    detections = model([image]).detections[0]
    proposals = model.proposal_generator.compute(image)
    matches = (detections.boxes[:, None, :] == proposals[None]).all(-1).any(1)
    assert matches.all()
