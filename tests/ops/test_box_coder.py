import math

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from detkit.ops.box_coder import BoxCoder


def test_encode_by_hand():
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10x20
    tgt = torch.tensor([[5.0, 0.0, 25.0, 20.0]])  # centre (15, 10), size 20x20
    deltas = BoxCoder((1.0, 1.0, 1.0, 1.0)).encode(src, tgt)
    assert torch.allclose(deltas, torch.tensor([[1.0, 0.0, math.log(2.0), 0.0]]))
    weighted = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode(src, tgt)
    assert torch.allclose(weighted, torch.tensor([[10.0, 0.0, 5 * math.log(2.0), 0.0]]))


def test_zero_deltas_decode_to_source():
    src = torch.tensor([[3.0, 4.0, 30.0, 44.0], [0.0, 0.0, 1.0, 1.0]])
    decoded = BoxCoder().decode(torch.zeros(2, 8), src)
    assert decoded.shape == (2, 2, 4)
    assert torch.equal(decoded[:, 0], src) and torch.equal(decoded[:, 1], src)


def test_decode_clamps_huge_scale():
    src = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    decoded = BoxCoder().decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), src)[:, 0]
    assert torch.isfinite(decoded).all()
    assert decoded[0, 2] - decoded[0, 0] <= 1000.0 + 1e-3


boxes = st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(1, 300), st.floats(1, 300)).map(
    lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]
)


@settings(max_examples=200, deadline=None)
@given(src=boxes, tgt=boxes, weights=st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]))
def test_round_trip(src, tgt, weights):
    # Beyond 1000/16 = 62.5x growth the decoder clamps on purpose (see test_decode_clamps_huge_scale).
    assume(all(t / s < 60 for t, s in ((tgt[2] - tgt[0], src[2] - src[0]), (tgt[3] - tgt[1], src[3] - src[1]))))
    coder = BoxCoder(weights)
    src_t, tgt_t = torch.tensor([src], dtype=torch.float64), torch.tensor([tgt], dtype=torch.float64)
    assert torch.allclose(coder.decode(coder.encode(src_t, tgt_t), src_t)[:, 0], tgt_t, atol=1e-6)
