"""Folding each batch norm that directly follows a convolution into that convolution, for inference.

    conv:        y = W * x + b                                  W ``[C_out, C_in / groups, kh, kw]``, b ``[C_out]``
    norm (eval): z = (y - mean) * s + beta,  s = gamma / sqrt(var + eps)          all ``[C_out]``
    folded:      z = (W * s) * x + ((b - mean) * s + beta)     one conv, the norm replaced by ``nn.Identity``

In eval mode a batch norm is a fixed per-channel affine map, so the conv before it can absorb it
(Jacob et al., CVPR 2018, section 3.2; what ``torch.ao`` and every deployment toolchain do): one pass
over each feature map fewer, and the same outputs up to float32 rounding. The scale and shift are
computed in float64 and rounded once into the conv's dtype.

Pairs are found from the structure of the model, never from names: a conv child whose output feeds
only a norm child of the same parent. In a plain ``nn.Sequential`` (and its subclasses that keep its
``forward``: detkit's ``ConvBNAct``, torchvision's ``Conv2dNormActivation``) that is two neighbours;
any other parent with a conv and a norm child (a ResNet block, a trunk, a new block) is traced with
``torch.fx``, its children kept as single calls, and the graph must show the conv's output going to
the norm and nowhere else (not returned, not added to anything). A parent whose ``forward`` cannot be
traced keeps its layers. A conv or norm registered under two parents, with hooks, or whose tensors
the parent reads directly is left alone: folding would change what they see.

Foldable norms: ``nn.BatchNorm2d`` / ``nn.SyncBatchNorm`` with running statistics, in eval mode, and
torchvision's ``FrozenBatchNorm2d`` (the trunks' ``norm="frozen_bn"``). Foldable convs: ``nn.Conv2d``
(any stride, padding, dilation, groups). Only a model in eval mode is folded, in place: its state
dict changes (norm entries gone, conv biases added), so fold only a model that is not saved or
trained afterwards, or ``folded_copy`` it.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import cast

import torch
import torch.fx as fx
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

BATCH_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)


def fold_batch_norms(model: nn.Module) -> list[str]:
    """Fold every foldable (conv, norm) pair of ``model`` in place; return the folded norms' names.

    ``ValueError`` for a model in training mode: a training norm normalizes by its batch's statistics,
    which no fixed conv can reproduce.
    """
    if model.training:
        raise ValueError("batch norms are folded for inference only: call model.eval() first")
    registrations = Counter(id(module) for _, module in model.named_modules(remove_duplicate=False))
    registrations.update(id(parameter) for _, parameter in model.named_parameters(remove_duplicate=False))
    folded = []
    for parent_name, parent in list(model.named_modules()):
        for conv_name, norm_name in conv_norm_pairs(parent):
            conv, norm = parent.get_submodule(conv_name), parent.get_submodule(norm_name)
            if any(registrations[id(shared)] > 1 for shared in (conv, norm, *conv.parameters(recurse=False))):
                continue  # reached from elsewhere too (another parent, a tied weight), where the norm does not follow
            _fold_into(cast(nn.Conv2d, conv), norm)
            setattr(parent, norm_name, nn.Identity())
            folded.append(f"{parent_name}.{norm_name}" if parent_name else norm_name)
    return folded


def folded_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` (in eval mode) with its norms folded; ``model`` itself is untouched."""
    copied = copy.deepcopy(model)
    fold_batch_norms(copied)
    return copied


def conv_norm_pairs(parent: nn.Module) -> list[tuple[str, str]]:
    """``(conv child, norm child)`` names of ``parent`` where the conv's output goes to the norm only."""
    children = dict(parent.named_children())
    convs = {name for name, child in children.items() if _foldable_conv(child)}
    norms = {name for name, child in children.items() if _foldable_norm(child)}
    if not convs or not norms:
        return []
    if isinstance(parent, nn.Sequential) and type(parent).forward is nn.Sequential.forward:
        names = list(children)
        neighbours = zip(names, names[1:])
        pairs = [(conv, norm) for conv, norm in neighbours if conv in convs and norm in norms]
    else:
        pairs = _traced_pairs(parent, convs, norms)
    return [(conv, norm) for conv, norm in pairs if _compatible(children[conv], children[norm])]


class _ChildrenAsCalls(fx.Tracer):
    """Traces one module's own ``forward``: each direct child is one opaque call."""

    def __init__(self, root: nn.Module) -> None:
        super().__init__()
        self.traced_root = root

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m is not self.traced_root


def _traced_pairs(parent: nn.Module, convs: set[str], norms: set[str]) -> list[tuple[str, str]]:
    try:
        graph = _ChildrenAsCalls(parent).trace(parent)
    except Exception:
        # Data-dependent control flow, a list argument, anything fx cannot follow: the order of this
        # parent's layers is not proven, so they stay as they are (a missed speed-up, never a wrong result).
        return []
    calls = [node for node in graph.nodes if node.op == "call_module"]
    times_called = Counter(node.target for node in calls)
    read_directly = {str(node.target).split(".")[0] for node in graph.nodes if node.op == "get_attr"}
    pairs = []
    for node in calls:
        if node.target not in convs or len(node.users) != 1:
            continue
        (user,) = node.users
        conv, norm = str(node.target), str(user.target)
        if (
            user.op == "call_module"
            and norm in norms
            and user.args == (node,)
            and not user.kwargs
            and times_called[conv] == times_called[norm] == 1
            and not {conv, norm} & read_directly
        ):
            pairs.append((conv, norm))
    return pairs


def _foldable_conv(module: nn.Module) -> bool:
    return type(module) is nn.Conv2d and not _hooked(module)


def _foldable_norm(module: nn.Module) -> bool:
    if _hooked(module) or module.training:
        return False
    if type(module) is FrozenBatchNorm2d:
        return True
    # Without running statistics a norm uses its batch's, even in eval mode.
    return type(module) in BATCH_NORMS and module.running_mean is not None and module.running_var is not None


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _compatible(conv: nn.Module, norm: nn.Module) -> bool:
    return cast(nn.Conv2d, conv).out_channels == cast(Tensor, norm.running_mean).numel()


def _norm_affine(norm: nn.Module) -> tuple[Tensor, Tensor]:
    """The eval-mode norm as ``z = y * scale + shift``: ``(scale [C], shift [C])`` in float64."""
    mean = cast(Tensor, norm.running_mean).double()
    var = cast(Tensor, norm.running_var).double()
    eps = float(cast(float, norm.eps))
    weight, bias = cast(Tensor | None, norm.weight), cast(Tensor | None, norm.bias)
    gamma = torch.ones_like(mean) if weight is None else weight.detach().double()
    beta = torch.zeros_like(mean) if bias is None else bias.detach().double()
    scale = gamma / torch.sqrt(var + eps)
    return scale, beta - mean * scale


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Make ``conv`` compute ``norm(conv(x))``: its weight scaled per output channel, its bias shifted."""
    scale, shift = _norm_affine(norm)
    bias = torch.zeros_like(scale) if conv.bias is None else conv.bias.double()
    folded_bias = (bias * scale + shift).to(conv.weight.dtype)
    # In place and in the weight's dtype: the one rounding of a float64 scale costs less than an ulp.
    conv.weight.mul_(scale.to(conv.weight.dtype).view(-1, 1, 1, 1))
    if conv.bias is None:
        conv.bias = nn.Parameter(folded_bias, requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(folded_bias)
