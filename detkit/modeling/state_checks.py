"""Whether a state dict can be loaded into a model faithfully, checked before ``load_state_dict``.

``load_state_dict`` compares names and shapes only, and casts the rest: int8 or bool values in a
float parameter load silently, NaN weights surface as an error deep inside a forward pass, and its
shape message names the model, not the tensor. These checks refuse such a state with one
``CheckpointError`` naming the file, the first offending tensor and the fix; checkpoints, a resumed
run's raw and EMA weights, fine-tuning and torchvision imports all go through them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detkit.errors import CheckpointError, a_type, quoted, shown

DAMAGED = "the file is damaged; re-train or re-download it"


def check_weights_fit(
    model: nn.Module,
    state: dict[str, Tensor],
    source: str,
    what: str,
    fix: str = "was it written by another detkit version, or for other model.* settings?",
    damage_fix: str = DAMAGED,
) -> None:
    """Refuse ``state`` unless ``model.load_state_dict(state, strict=True)`` copies every tensor faithfully.

    ``load_state_dict`` compares names and shapes only and casts the rest: int8 or bool values in a
    float parameter load silently, NaN weights surface as an error deep inside a forward pass.
    ``what`` names the model in the message ("a faster_rcnn model with 5 classes"); ``fix`` is said
    about missing, unexpected or misshapen tensors, ``damage_fix`` about values (``check_weight_values``).
    """
    expected = model.state_dict()
    _check_names(state, expected, _dropped_on_load(model), f"{source}: weights do not fit {what}", fix)
    _check_shapes(state, expected, f"{source}: weights do not fit {what}", fix)
    check_weight_values(state, expected, source, damage_fix)


def _dropped_on_load(model: nn.Module) -> set[str]:
    """Keys ``load_state_dict`` discards: torchvision's FrozenBatchNorm2d deletes ``num_batches_tracked``,
    which a torchvision model trained with plain BatchNorm2d has."""
    frozen = (name for name, module in model.named_modules() if isinstance(module, FrozenBatchNorm2d))
    return {f"{name}.num_batches_tracked" for name in frozen}


def _check_names(
    state: dict[str, Tensor],
    expected: dict[str, Tensor],
    dropped: set[str],
    context: str,
    fix: str,
) -> None:
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected and name not in dropped]
    problems = [_counted(missing, "missing"), _counted(unexpected, "unexpected")]
    if missing or unexpected:
        raise CheckpointError(f"{context}: {', '.join(p for p in problems if p)}; {fix}")


def _counted(names: list[str], what: str) -> str:
    """``"tensor 'a' missing"``, ``"3 tensors missing (first: 'a')"``, or "" for none."""
    if len(names) == 1:
        return f"tensor {quoted_name(names[0])} {what}"
    return f"{len(names)} tensors {what} (first: {quoted_name(names[0])})" if names else ""


def _check_shapes(state: dict[str, Tensor], expected: dict[str, Tensor], context: str, fix: str) -> None:
    wrong = [name for name, own in expected.items() if tuple(state[name].shape) != tuple(own.shape)]
    if wrong:
        first = wrong[0]
        others = len(wrong) - 1
        more = f" ({others} more tensor{'s differ' if others > 1 else ' differs'})" if others else ""
        raise CheckpointError(
            f"{context}: tensor {first!r} has shape {quoted(list(state[first].shape), 60)}, the model expects "
            f"{list(expected[first].shape)}{more}; {fix}"
        )


def value_kind(tensor: Tensor) -> str:
    """What ``load_state_dict`` may cast between without changing what a value means: a floating-point
    value of any width stays the same number (float16 and bfloat16 widen to float32 exactly; float64
    rounds to the float32 the model computes in anyway), but an integer, a bool or a complex number
    put into a float parameter is not a weight."""
    if tensor.is_quantized:
        return "quantized"
    if tensor.dtype == torch.bool:
        return "bool"
    if tensor.dtype.is_complex:
        return "complex"
    return "floating" if tensor.dtype.is_floating_point else "integer"


def check_weight_values(
    state: dict[str, Tensor],
    expected: dict[str, Tensor],
    source: str,
    damage_fix: str = DAMAGED,
) -> None:
    """For every tensor of ``state`` that ``expected`` (the model's state dict) also has: a dense CPU
    tensor, of the model's kind of values (``value_kind``), finite where it is floating-point (counted
    after the cast to the model's dtype, so float64 values beyond float32's range count as inf)."""
    nonfinite: list[tuple[str, int, int]] = []
    for name, own in expected.items():
        tensor = state.get(name)
        if tensor is None:
            continue
        _check_storage(name, tensor, source, damage_fix)
        if value_kind(tensor) != value_kind(own):
            raise CheckpointError(
                f"{source}: tensor {name!r} holds {str(tensor.dtype).removeprefix('torch.')} values where the model "
                f"has {str(own.dtype).removeprefix('torch.')} (load_state_dict would cast them silently); {damage_fix}"
            )
        if own.dtype.is_floating_point:
            count = _nonfinite_count(tensor.to(own.dtype))
            if count:
                nonfinite.append((name, count, tensor.numel()))
    if nonfinite:
        name, count, total = nonfinite[0]
        others = len(nonfinite) - 1
        more = f"; {others} more tensor{'s have' if others > 1 else ' has'} some" if others else ""
        raise CheckpointError(
            f"{source}: tensor {name!r} holds {count} non-finite values (NaN or inf) of {total}{more}; {damage_fix}"
        )


def _nonfinite_count(values: Tensor) -> int:
    """NaN and inf values in ``values``. A sum is NaN or inf whenever one term is, and costs a tenth of
    ``isfinite``; only when it is not finite (some value is, or large finite values overflowed) are they counted."""
    if math.isfinite(values.sum().item()):
        return 0
    return int((~torch.isfinite(values)).sum())


def _check_storage(name: str, tensor: Tensor, source: str, damage_fix: str) -> None:
    if tensor.layout != torch.strided or tensor.device.type != "cpu":
        raise CheckpointError(
            f"{source}: tensor {name!r} is a {str(tensor.layout).removeprefix('torch.')} tensor on "
            f"{tensor.device.type}, not the dense tensor detkit writes; {damage_fix}"
        )


def check_tensor_dict(value: Any, source: str | Path, name: str) -> dict[str, Tensor]:
    """``value`` when it is a dict of str -> Tensor (a state dict), else a ``CheckpointError`` naming ``name``."""
    if not isinstance(value, dict):
        raise CheckpointError(f"{source}: {name} is {a_type(value)}, not a mapping; {DAMAGED}")
    for key, tensor in value.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{source}: {name} has the key {shown(key)}, not a tensor name; {DAMAGED}")
        if not isinstance(tensor, Tensor):
            raise CheckpointError(f"{source}: {name}[{quoted_name(key)}] is {a_type(tensor)}, not a tensor; {DAMAGED}")
    return value


def quoted_name(name: str) -> str:
    """A tensor or state key from a file, quoted whole up to 120 characters (``quoted`` cuts at 40)."""
    return repr(name if len(name) <= 120 else name[:117] + "...")
