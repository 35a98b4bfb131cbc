"""LoRA setup (:func:`add_lora`) and fast per-sample gradients for trainable ``nn.Linear`` layers.

This is the default per-sample-gradient path of :mod:`veil.privacy.dpsgd`
(``grad_sample_mode="lora-fast"``). With LoRA (or head-only) fine-tuning the only
trainable layers are small ``nn.Linear`` modules — PEFT's ``lora_A`` / ``lora_B``
and the classification head — sitting on a frozen backbone. For such a layer
``y = x W^T + b`` with input ``x`` of shape ``(b, t, d_in)`` and output gradient
``g`` of shape ``(b, t, d_out)``, the gradient contributed by example ``i`` is

    dW_i = sum_t g[i, t] (outer) x[i, t]  = g_i^T x_i      (one batched matmul)
    db_i = sum_t g[i, t]

For LoRA ``y = x W0^T + s (x A^T) B^T`` this gives exactly the per-sample
gradients of the adapters: ``lora_B``'s input is ``x A^T`` and its output
gradient already carries the scale ``s``; ``lora_A``'s output gradient is
``s g B``. Since the rank ``r`` is tiny these products cost far less than the
backbone's forward pass, and the frozen backbone needs no per-sample work at all.

Activations are captured with forward hooks and output gradients with tensor
hooks on each layer's output (cheaper than ``register_full_backward_hook``).
Privacy meaning: these are the per-record gradients that DP-SGD clips to norm
``C``; the unit of privacy is one example (one row of the batch).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn

from veil.errors import BadInput

HEAD_NAMES = ("classifier", "score")


def add_lora(
    model: nn.Module,
    *,
    r: int = 8,
    alpha: int = 16,
    targets: list[str] | None = None,
    task: Literal["single_label", "multi_label", "causal_lm"] = "single_label",
    adapter: Literal["lora", "head", "full"] = "lora",
    dropout: float = 0.0,
) -> nn.Module:
    """Select the trainable weights: LoRA adapters + head, the head only, or everything.

    Call this *after* moving the model to its device (PEFT/Opacus pitfall: LoRA
    weights created before the move can end up outside the optimizer and never train).

    Args:
        model: a transformers model (sequence classifier or causal LM).
        r: LoRA rank.
        alpha: LoRA alpha (scale ``alpha / r``).
        targets: module names to adapt; default from PEFT's table per architecture
            (BERT: query, value; Llama: q_proj, v_proj).
        task: "single_label" / "multi_label" (classification head trained too) or "causal_lm".
        adapter: "lora", "head" (classification head only) or "full" (all weights).
        dropout: LoRA dropout.

    Returns:
        The PEFT model (``adapter="lora"``) or ``model`` with ``requires_grad`` set.
    """
    if adapter == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if adapter == "head":
        heads = [m for n in HEAD_NAMES if isinstance(m := getattr(model, n, None), nn.Module)]
        if task == "causal_lm" or not heads:
            raise BadInput("adapter='head' needs a classification head (classifier/score)")
        for p in model.parameters():
            p.requires_grad_(False)
        for head in heads:
            for p in head.parameters():
                p.requires_grad_(True)
        return model
    if adapter != "lora":
        raise BadInput("adapter must be 'lora', 'head' or 'full'")
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table

    if targets is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in table:
            raise BadInput(f"no default LoRA targets for model type {model_type!r}; pass targets")
        targets = list(table[model_type])
    task_type = TaskType.CAUSAL_LM if task == "causal_lm" else TaskType.SEQ_CLS
    config = LoraConfig(
        r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=dropout, task_type=task_type
    )
    return get_peft_model(model, config)  # type: ignore[arg-type]


class UnsupportedLayerError(ValueError):
    """A trainable parameter lives in a layer the fast path cannot differentiate per sample."""


def _owners(model: nn.Module) -> dict[int, tuple[str, nn.Module]]:
    """Map id(parameter) -> (qualified name, module that owns it directly)."""
    owners: dict[int, tuple[str, nn.Module]] = {}
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), (f"{mod_name}.{p_name}" if mod_name else p_name, module))
    return owners


class LinearPerSampleGrads:
    """Collects per-sample gradients of every trainable parameter of ``model``.

    All trainable parameters must belong to ``nn.Linear`` layers (LoRA adapters,
    classification heads); anything else raises :class:`UnsupportedLayerError`
    at construction, so a layer can never silently escape clipping.

    Usage: ``with collector.capture(): loss.backward()`` then ``collector.pop()``.

    Args:
        model: the model; hooks are attached to its trainable Linear layers.
        params: the trainable parameters, in the order results are returned.
    """

    def __init__(self, model: nn.Module, params: Iterable[nn.Parameter]) -> None:
        self.params = list(params)
        owners = _owners(model)
        modules: dict[int, nn.Linear] = {}
        for p in self.params:
            if id(p) not in owners:
                raise UnsupportedLayerError("a trainable parameter is not part of the model")
            name, module = owners[id(p)]
            if type(module) is not nn.Linear:
                raise UnsupportedLayerError(
                    f"parameter {name} belongs to a {type(module).__name__}; the 'lora-fast' "
                    "per-sample path handles nn.Linear layers only (LoRA adapters, heads). "
                    "Use grad_sample_mode='ghost', 'hooks' or 'functorch' for this model."
                )
            modules[id(module)] = module
        self._wanted = {id(p) for p in self.params}
        self._grads: dict[int, Tensor] = {}
        self._inputs: dict[int, Tensor] = {}  # activations awaiting their output gradient
        self._keys = itertools.count()
        self._active = False
        self._handles = [m.register_forward_hook(self._forward_hook) for m in modules.values()]

    def remove(self) -> None:
        """Detach all hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def start(self) -> None:
        """Begin recording: forward passes from now on register gradient hooks."""
        self._grads, self._inputs = {}, {}
        self._active = True

    def stop(self) -> None:
        """Stop recording (later forward passes, e.g. evaluation, are not hooked)."""
        self._active = False
        self._inputs = {}

    def _forward_hook(self, module: nn.Linear, inputs: tuple[Any, ...], output: Any) -> None:
        if not self._active or not torch.is_grad_enabled():
            return
        if not isinstance(output, Tensor) or not output.requires_grad:
            return
        key = next(self._keys)
        # the hook holds only a key, so the activation is freed as soon as it is used
        self._inputs[key] = inputs[0].detach()
        output.register_hook(partial(self._backward_hook, module, key))

    def _backward_hook(self, module: nn.Linear, key: int, grad: Tensor) -> None:
        x = self._inputs.pop(key, None)
        if x is None:
            return
        b = x.shape[0]
        g = grad.detach()
        weight = module.weight
        if weight.requires_grad and id(weight) in self._wanted:
            if x.dim() == 2:
                gw = g.unsqueeze(2) * x.unsqueeze(1)
            else:
                g3 = g.reshape(b, -1, g.shape[-1])
                x3 = x.reshape(b, -1, x.shape[-1])
                if g3.shape[-1] > x3.shape[-1]:  # keep the wide side last: ~3x faster bmm
                    gw = torch.bmm(x3.transpose(1, 2), g3).transpose(1, 2)
                else:
                    gw = torch.bmm(g3.transpose(1, 2), x3)
            self._accumulate(weight, gw.to(weight.dtype))
        bias = module.bias
        if bias is not None and bias.requires_grad and id(bias) in self._wanted:
            gb = g if g.dim() == 2 else g.reshape(b, -1, g.shape[-1]).sum(1)
            self._accumulate(bias, gb.to(bias.dtype))

    def _accumulate(self, p: Tensor, gs: Tensor) -> None:
        prev = self._grads.get(id(p))
        self._grads[id(p)] = gs if prev is None else prev + gs

    def pop(self) -> list[Tensor | None]:
        """Per-sample gradients ``(b, *p.shape)`` in ``params`` order (None: never reached)."""
        out = [self._grads.get(id(p)) for p in self.params]
        self._grads = {}
        return out


def clip_and_sum(
    grad_samples: list[Tensor], max_grad_norm: float,
    groups: Sequence[Sequence[int]] | None = None,
) -> tuple[list[Tensor], Tensor]:
    """Clip each example's gradient to L2 norm ``max_grad_norm`` and sum over examples.

    Flat clipping (``groups=None``): the norm is taken over all parameters together,
    with the same factor ``min(1, C / (norm + 1e-6))`` as Opacus. Group-wise
    clipping: ``groups`` partitions the indices of ``grad_samples`` into k groups,
    each clipped on its own to ``C / sqrt(k)``, so the whole clipped gradient still
    has norm at most C (the sensitivity, hence σ and ε, is unchanged). Returns the
    clipped sums (one per parameter) and the per-example norms before clipping.
    """
    b = grad_samples[0].shape[0]
    parts = [list(range(len(grad_samples)))] if groups is None else [list(g) for g in groups]
    if sorted(i for g in parts for i in g) != list(range(len(grad_samples))):
        raise ValueError("clipping groups must partition the parameters")
    bound = max_grad_norm / math.sqrt(len(parts))
    factors: list[Tensor | None] = [None] * len(grad_samples)
    total = torch.zeros(b, dtype=grad_samples[0].dtype, device=grad_samples[0].device)
    for group in parts:
        sq = torch.zeros_like(total)
        for i in group:
            sq = sq + grad_samples[i].reshape(b, -1).pow(2).sum(1)
        total = total + sq
        factor = (bound / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        for i in group:
            factors[i] = factor
    sums = [(f.to(gs.dtype) @ gs.reshape(b, -1)).view(gs.shape[1:])  # type: ignore[union-attr]
            for f, gs in zip(factors, grad_samples, strict=True)]
    return sums, total.sqrt()
