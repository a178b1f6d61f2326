from dataclasses import replace

import pytest
import torch

from detkit.config import BackboneConfig, ModelConfig, ProposalConfig, RCNNConfig
from detkit.data.images import image_to_tensor
from detkit.modeling.backbones import build_backbone
from detkit.modeling.precomputed_proposals import PrecomputedProposals
from detkit.modeling.stages import record_stages
from detkit.ops.box_coder import BoxCoder
from detkit.pipelines import PIPELINES
from detkit.pipelines.rcnn.model import RCNNDetector, RegionCNN
from detkit.structures import Detections, Target
from tests.proposals.images import object_boxes, rectangles_image


@pytest.fixture
def rcnn_config(tmp_path) -> ModelConfig:
    return ModelConfig(
        pipeline="rcnn",
        num_classes=3,
        backbone=BackboneConfig(name="resnet18", fpn=False, returned_stages=(5,)),
        proposals=ProposalConfig(cache_dir=str(tmp_path)),
        rcnn=RCNNConfig(crop_size=32, context_padding=3, score_thresh=0.0),
    )


def build(cfg):
    torch.manual_seed(0)
    return PIPELINES["rcnn"].build(cfg)


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


def test_build_rcnn_passes_its_parts_and_the_checkpoint_keys_stay(rcnn_config):
    model = build(rcnn_config)
    assert isinstance(model.proposal_generator, PrecomputedProposals) and isinstance(model.cnn, RegionCNN)
    assert model.box_coder.weights == (1.0, 1.0, 1.0, 1.0)  # the paper's parameterization (appendix C)
    assert model.num_classes == model.cnn.num_classes == 3 and model.cfg is rcnn_config.rcnn
    state = model.state_dict()
    own = {k for k in state if not k.startswith("cnn.")}
    assert own == {"feature_scale", "svm_weight", "svm_bias", "regressor_weight"}
    assert {k.removeprefix("cnn.") for k in state if k.startswith("cnn.")} == set(model.cnn.state_dict())
    dim = model.cnn.feature_dim
    assert model.svm_weight.shape == (3, dim) and model.regressor_weight.shape == (3, dim + 1, 4)
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(rcnn_config.transform.image_mean))


def test_a_detector_uses_the_parts_it_is_given(rcnn_config):
    cnn = RegionCNN(build_backbone(rcnn_config.backbone), num_classes=2)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposals = PrecomputedProposals(rcnn_config.proposals)
    model = RCNNDetector(proposals, cnn, coder, rcnn_config.rcnn, image_mean=(0.5,) * 3, image_std=(0.25,) * 3)
    assert model.cnn is cnn and model.box_coder is coder and model.proposal_generator is proposals
    assert model.num_classes == 2 and model.svm_weight.shape == (2, cnn.feature_dim)
    assert torch.equal(model.normalize(torch.ones(3, 2, 2)), torch.full((3, 2, 2), 2.0))
    model.regressor_weight[:, -1, 0] = 1.0  # bias row: dx = 1 for every box
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    moved = model.regress(torch.zeros(1, cnn.feature_dim), box, torch.tensor([1]))
    torch.testing.assert_close(moved, coder.decode(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), box)[:, 0])


def test_box_regression_applies_each_regions_own_class_regressor(rcnn_config):
    """Grouped by class (no per-region copy of the [D + 1, 4] regressor), same deltas as the gather."""
    model = build(rcnn_config).eval()
    torch.manual_seed(2)
    model.regressor_weight.normal_(std=1e-3)
    features = torch.rand(7, model.regressor_weight.shape[1] - 1)
    boxes = torch.tensor([[10.0, 12.0, 40.0, 50.0]]).repeat(7, 1)
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 1])
    augmented = torch.cat([features * model.feature_scale, torch.ones(7, 1)], dim=1)
    expected_deltas = torch.einsum("rd,rdc->rc", augmented, model.regressor_weight[labels])
    expected = model.box_coder.decode(expected_deltas, boxes)[:, 0]
    torch.testing.assert_close(model.regress(features, boxes, labels), expected)
    assert model.regress(features[:0], boxes[:0], labels[:0]).shape == (0, 4)
    rows = torch.tensor([0, 0, 1, 1, 2, 2, 3])  # boxes of 4 proposals, scored for several classes
    by_proposal = model.regress(features[:4], boxes, labels, rows=rows)
    torch.testing.assert_close(by_proposal, model.regress(features[rows], boxes, labels))
