"""R-CNN fine-tuning through the gradient loop's training step (engine/rcnn/finetune.py)."""

import math
from dataclasses import replace

import pytest
import torch
from torch import Tensor

from detkit.data.seeded import hash_ints
from detkit.engine.events import Notice, StageAdvanced
from detkit.engine.rcnn import StageContext
from detkit.engine.rcnn.finetune import finetune_cnn, window_seed
from detkit.engine.solver import build_optimizer, build_scheduler
from detkit.engine.training_data import epoch_loader
from detkit.errors import TrainingError
from detkit.structures import Target
from tests.engine.rcnn.conftest import MakeContext


def plain_loop(context: StageContext) -> None:
    """R-CNN fine-tuning as it was before it shared the training step: zero_grad, backward, step, schedule."""
    cfg, model = context.cfg, context.model
    iters = cfg.model.rcnn.finetune_iters
    optimizer = build_optimizer(model.cnn, cfg.solver)
    scheduler = build_scheduler(optimizer, replace(cfg.solver, epochs=1), iters)
    model.train()
    step, epoch = 0, 0
    while step < iters:
        for images, targets in epoch_loader(context.train_set, cfg, epoch):
            torch.manual_seed(hash_ints(cfg.seed, 0, step))
            loss = model(images, targets).losses["loss_cls"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step == iters:
                break
        epoch += 1
    model.eval()


def parameters(context: StageContext) -> list[Tensor]:
    return [p.detach().clone() for p in context.model.cnn.parameters()]


def test_window_seeds_keep_the_unaccumulated_stream():
    assert window_seed(7, 1, 3, 0) == hash_ints(7, 1, 3)  # what R-CNN fine-tuning always seeded a step with
    assert len({window_seed(7, 1, 3, micro) for micro in range(3)}) == 3


def test_without_clipping_the_shared_step_gives_the_plain_loops_weights_bit_for_bit(make_context: MakeContext):
    # 4 steps of 3 batches per epoch: across an epoch boundary.
    shared, _ = make_context(finetune_iters=4, clip_grad_norm=0.0)
    plain, _ = make_context(finetune_iters=4, clip_grad_norm=0.0)
    losses = finetune_cnn(shared)
    plain_loop(plain)
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
    for name, tensor in shared.model.cnn.state_dict().items():
        assert torch.equal(tensor, plain.model.cnn.state_dict()[name]), name
    assert not shared.model.training


def test_the_solvers_clipping_bounds_the_update(make_context: MakeContext):
    lr, clip = 0.1, 1e-3
    context, _ = make_context(
        optimizer="sgd",
        lr=lr,
        momentum=0.0,
        weight_decay=0.0,
        warmup_iters=0,
        clip_grad_norm=clip,
    )
    before = parameters(context)
    finetune_cnn(context)
    change = torch.stack([(after - start).norm() for after, start in zip(parameters(context), before)]).norm()
    # SGD moves by lr x the gradient, whose norm clipping brought down to `clip` (it is far above: ~20).
    assert math.isclose(float(change), lr * clip, rel_tol=1e-3)


def test_a_nonfinite_batch_is_skipped_and_does_not_count_as_a_step(make_context: MakeContext, monkeypatch):
    context, events = make_context(finetune_iters=2, max_nonfinite_steps=2)
    model, real_loss, calls = context.model, context.model.finetune_loss, []

    def first_one_nan(images: list[Tensor], targets: list[Target]) -> Tensor:
        calls.append(len(images))
        loss = real_loss(images, targets)
        return loss * float("nan") if len(calls) == 1 else loss

    monkeypatch.setattr(model, "finetune_loss", first_one_nan)
    losses = finetune_cnn(context)
    assert len(calls) == 3 and len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert any(isinstance(e, Notice) and "step skipped (1/2)" in e.message for e in events)
    assert [e.completed for e in events if isinstance(e, StageAdvanced) and e.stage == "finetune"] == [1, 2]


def test_nonfinite_losses_in_a_row_stop_finetuning(make_context: MakeContext, monkeypatch):
    context, _ = make_context(finetune_iters=3, max_nonfinite_steps=2)
    model = context.model
    monkeypatch.setattr(model, "finetune_loss", lambda images, targets: model.cnn.classifier.bias.sum() * float("nan"))
    with pytest.raises(TrainingError, match="2 non-finite losses in a row"):
        finetune_cnn(context)
    assert model.cnn.classifier.bias.grad is None  # the skipped steps' gradients were dropped


def test_accumulation_makes_a_step_of_several_batches_and_an_epoch_end_cuts_a_group_short(
    make_context: MakeContext,
    monkeypatch,
):
    context, events = make_context(finetune_iters=2, accumulate_steps=2)
    real_loss, calls = context.model.finetune_loss, []

    def counted(images: list[Tensor], targets: list[Target]) -> Tensor:
        calls.append(len(images))
        return real_loss(images, targets)

    monkeypatch.setattr(context.model, "finetune_loss", counted)
    losses = finetune_cnn(context)
    assert calls == [2, 2, 2]  # 6 images in batches of 2: step 1 of batches 1-2, step 2 of batch 3 alone
    assert len(losses) == 2
    assert [e.completed for e in events if isinstance(e, StageAdvanced) and e.stage == "finetune"] == [1, 2]


def test_with_ema_the_result_is_the_moving_average(make_context: MakeContext):
    averaged, _ = make_context(ema_decay=0.5, ema_ramp_steps=1)
    raw, _ = make_context()
    start = parameters(raw)
    finetune_cnn(averaged)
    finetune_cnn(raw)
    decay = 0.5 * (1 - math.exp(-1.0))  # ModelEMA's ramped decay at its first update
    for initial, trained, result in zip(start, parameters(raw), parameters(averaged)):
        torch.testing.assert_close(result, initial + (1 - decay) * (trained - initial), rtol=1e-5, atol=1e-6)


def test_amp_finetunes_under_autocast(make_context: MakeContext):
    context, _ = make_context(amp=True, amp_dtype="bf16")
    before = parameters(context)
    losses = finetune_cnn(context)
    assert len(losses) == 1 and math.isfinite(losses[0])
    assert any(not torch.equal(a, b) for a, b in zip(parameters(context), before))
    assert all(p.dtype == torch.float32 for p in context.model.cnn.parameters())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_amp_finetunes_through_the_gradient_scaler_on_cuda(make_context: MakeContext):
    context, _ = make_context(finetune_iters=2, amp=True, amp_dtype="fp16")
    context = replace(context, model=context.model.cuda(), device=torch.device("cuda"))
    before = parameters(context)
    losses = finetune_cnn(context)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert any(not torch.equal(a, b) for a, b in zip(parameters(context), before))
