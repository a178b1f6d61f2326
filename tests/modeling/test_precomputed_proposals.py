import numpy as np
import torch

from detkit.config import ProposalConfig, TransformConfig
from detkit.data.images import image_to_tensor
from detkit.modeling.precomputed_proposals import PrecomputedProposals
from detkit.modeling.transform import ImageTransform
from detkit.proposals.cache import ProposalCache
from detkit.proposals.selective_search import selective_search
from detkit.structures import Target
from tests.proposals.images import rectangles_image


def test_given_proposals_are_resized_with_the_image(tmp_path):
    transform = ImageTransform(TransformConfig(min_size=(256,), max_size=512)).eval()
    proposals = torch.tensor([[10.0, 12.0, 50.0, 40.0], [0.0, 0.0, 128.0, 64.0]])
    batch, targets = transform([torch.rand(3, 64, 128)], [Target(image_id=1, proposals=proposals)])
    source = PrecomputedProposals(ProposalConfig(cache_dir=str(tmp_path)))
    boxes, losses = source.propose(batch, [], targets)
    assert losses == {} and batch.image_sizes == [(256, 512)]
    torch.testing.assert_close(boxes[0], proposals * 4)


def test_without_targets_selective_search_runs_on_the_pixels_and_is_cached(tmp_path):
    cfg = ProposalConfig(cache_dir=str(tmp_path))
    image = rectangles_image(96, 128)
    transform = ImageTransform(TransformConfig(min_size=(192,), max_size=512)).eval()
    batch, _ = transform([image_to_tensor(image)])
    boxes, _ = PrecomputedProposals(cfg).propose(batch, [])
    expected = torch.from_numpy(selective_search(image, cfg)) * 2
    torch.testing.assert_close(boxes[0], expected)
    # the tensor found the entry that the decoded file would: same key from both paths
    assert ProposalCache(cfg).load(image) is not None


def test_tensor_pixels_round_trip_to_the_same_cache_key(tmp_path):
    cfg = ProposalConfig(cache_dir=str(tmp_path))
    image = np.random.default_rng(0).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    source = PrecomputedProposals(cfg)
    source.compute(image_to_tensor(image))
    assert ProposalCache(cfg).path_for(image).is_file()
