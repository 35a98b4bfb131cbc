"""The DP-SGD engine shared by ``veil train`` and ``veil synth``.

DP-SGD (Abadi et al. 2016) with Poisson sampling: each record joins a batch
independently with probability ``q``; each example's gradient is clipped to L2
norm ``C``; Gaussian noise ``N(0, sigma^2 C^2)`` is added per coordinate to the
clipped sum, which is divided by the *expected* batch size ``q N`` (as Opacus
does). The accountant (Opacus PRV/RDP/GDP) records every step, so
:meth:`DPTrainer.epsilon` is the (epsilon, delta)-DP guarantee of the released
weights with respect to adding or removing **one training record** (example-level
privacy; a person with several records is covered only by group privacy).

Only LoRA adapters and the head (``adapter="lora"``), only the head
(``"head"``) or all weights (``"full"``) are trained. Per-sample gradients come
from :mod:`veil.privacy.lora_grads` (``grad_sample_mode="lora-fast"``, default)
or from Opacus (``"hooks"``, ``"functorch"``, ``"ghost"``); all modes share one
interface, one noise function (Opacus's) and one accountant. The setup refuses
any trainable parameter without a per-sample-gradient path, and the first step
checks that trainable weights really moved (the PEFT/Opacus frozen-LoRA pitfall).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from veil.errors import BadInput
from veil.privacy.lora_grads import (
    LinearPerSampleGrads,
    UnsupportedLayerError,
    add_lora,
    clip_and_sum,
)
from veil.privacy.rng import make_torch_generator

LossFn = Callable[[nn.Module, Mapping[str, Tensor]], Tensor]
"""``loss_fn(model, batch) -> per-example losses of shape (batch,)``."""

__all__ = [
    "DPConfig",
    "DPTrainer",
    "LossFn",
    "MicroBatches",
    "UnsupportedLayerError",
    "add_lora",
    "causal_lm_loss",
    "classification_loss",
]

GRAD_SAMPLE_MODES = ("lora-fast", "hooks", "functorch", "ghost")
ACCOUNTANTS = ("prv", "rdp", "gdp")


@dataclass(frozen=True)
class DPConfig:
    """Privacy parameters of one DP-SGD run.

    Args:
        noise_multiplier: sigma; noise std is ``sigma * max_grad_norm`` per coordinate.
        max_grad_norm: C, the L2 bound on each example's gradient (its sensitivity).
        sample_rate: q, probability that a record joins a batch (Poisson sampling).
        dataset_size: N, number of training records; the expected batch is ``q N``.
        accountant: "prv" (Opacus default), "rdp" or "gdp". PRV is tight but
            unreliable above epsilon ~ 10; report RDP alongside there.
        grad_sample_mode: "lora-fast" (Linear-only fast path), or Opacus's
            "hooks", "functorch", "ghost".
        secure: draw noise and sampling seeds from the OS entropy pool (ignores
            ``seed``) and use Opacus's floating-point-attack-resistant noise.
        seed: seed for reproducible experiments (never for a real release).
    """

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    dataset_size: int
    accountant: Literal["prv", "rdp", "gdp"] = "prv"
    grad_sample_mode: Literal["lora-fast", "hooks", "functorch", "ghost"] = "lora-fast"
    secure: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.noise_multiplier >= 0:
            raise BadInput("noise_multiplier must be >= 0")
        if not self.max_grad_norm > 0:
            raise BadInput("max_grad_norm must be > 0")
        if not 0 < self.sample_rate <= 1:
            raise BadInput("sample_rate must be in (0, 1]")
        if self.dataset_size < 1:
            raise BadInput("dataset_size must be >= 1")
        if self.accountant not in ACCOUNTANTS:
            raise BadInput(f"accountant must be one of {ACCOUNTANTS}")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise BadInput(f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}")

    @property
    def expected_batch_size(self) -> float:
        """``q N``: the denominator of the noisy average gradient."""
        return self.sample_rate * self.dataset_size


def classification_loss(task: Literal["single_label", "multi_label"] = "single_label") -> LossFn:
    """Per-example loss for a sequence classifier: cross-entropy, or mean BCE over labels.

    The batch is a mapping of tensors with ``labels`` (class ids, or a float 0/1
    matrix for multi-label); every other key is passed to the model.
    """

    def loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits
        labels = batch["labels"]
        if task == "multi_label":
            bce = F.binary_cross_entropy_with_logits(
                logits, labels.to(logits.dtype), reduction="none"
            )
            return bce.mean(-1)
        return F.cross_entropy(logits, labels, reduction="none")

    return loss


def causal_lm_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """Per-example next-token loss (mean over the example's non-ignored tokens).

    ``labels`` defaults to ``input_ids`` with padding (attention_mask 0) ignored.
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels = batch.get("labels")
    if labels is None:
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    logits = model(**inputs).logits[:, :-1]
    target = labels[:, 1:]
    tok = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="none")
    valid = (target != -100).to(tok.dtype)
    return (tok * valid).sum(1) / valid.sum(1).clamp(min=1.0)


@dataclass(frozen=True)
class MicroBatches:
    """One Poisson-sampled batch held as several physical micro-batches.

    Clipping is per example, so the clipped sum, and hence the noisy step and its
    privacy, are exactly those of the whole batch; splitting only changes padding
    (micro-batches of similar lengths pad less) and peak memory. The fast path
    (``grad_sample_mode="lora-fast"``) accepts them; Opacus's modes take one batch.
    """

    parts: tuple[Mapping[str, Tensor], ...]


def _batch_len(batch: Any) -> int:
    if isinstance(batch, MicroBatches):
        return sum(_batch_len(part) for part in batch.parts)
    if isinstance(batch, Mapping):
        for v in batch.values():
            if isinstance(v, Tensor):
                return int(v.shape[0])
        raise BadInput("a batch must contain at least one tensor")
    if isinstance(batch, list | tuple) and len(batch) == 0:
        return 0  # Opacus's collate returns [] when the very first batch is empty
    raise BadInput("a batch must be a mapping of tensors (e.g. input_ids, labels)")


class DPTrainer:
    """DP-SGD training of ``model`` (interface identical for every per-sample mode).

    Args:
        model: the model, with trainable weights already selected (:func:`add_lora`).
        optimizer: a torch optimizer over exactly the trainable parameters.
        config: privacy parameters.
        loss_fn: per-example losses; see :func:`classification_loss`, :func:`causal_lm_loss`.
        noise_generator: source of the Gaussian noise (default: built from ``config``).
        sample_generator: source of the Poisson sampling in :meth:`make_loader`.
        clip_groups: group-wise clipping (``"lora-fast"`` only): a partition of the
            trainable parameters into k groups, each clipped to ``max_grad_norm / sqrt(k)``
            (the per-record sensitivity stays ``max_grad_norm``; σ and ε are unchanged).
            Useful when one group's gradient would otherwise dwarf another's, e.g. a
            classification head over LoRA adapters. Default: flat clipping.

    Raises:
        UnsupportedLayerError: a trainable parameter has no per-sample path in this mode.
        BadInput: the optimizer and the trainable parameters disagree.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: DPConfig,
        loss_fn: LossFn,
        *,
        noise_generator: torch.Generator | None = None,
        sample_generator: torch.Generator | None = None,
        clip_groups: Sequence[Sequence[nn.Parameter]] | None = None,
    ) -> None:
        from opacus.accountants import create_accountant

        self.model, self.optimizer, self.config, self.loss_fn = model, optimizer, config, loss_fn
        self._params: list[nn.Parameter] = [p for g in optimizer.param_groups for p in g["params"]]
        self._names = self._check_params()
        seed = config.seed
        self._noise_gen = noise_generator or make_torch_generator(seed, secure=config.secure)
        self._sample_gen = sample_generator or make_torch_generator(
            None if seed is None else seed + 1, secure=config.secure
        )
        self._accountant = create_accountant(config.accountant)
        self._steps = 0
        self._checked_motion = False
        self._collector: LinearPerSampleGrads | None = None
        self._hooks: Any = None
        self._dp_opt: Any = None
        self._clip_groups = self._group_indices(clip_groups)
        if config.grad_sample_mode == "lora-fast":
            self._collector = LinearPerSampleGrads(model, self._params)
        else:
            if self._clip_groups is not None:
                raise BadInput("group-wise clipping needs grad_sample_mode='lora-fast'")
            self._setup_opacus()

    def _group_indices(self, groups: Sequence[Sequence[nn.Parameter]] | None
                       ) -> list[list[int]] | None:
        if groups is None:
            return None
        index = {id(p): i for i, p in enumerate(self._params)}
        out = [[index.get(id(p), -1) for p in g] for g in groups if len(g)]
        flat = sorted(i for g in out for i in g)
        if flat != list(range(len(self._params))):
            raise BadInput("clip_groups must partition the trainable parameters")
        return out

    def _check_params(self) -> list[str]:
        names = {id(p): n for n, p in self.model.named_parameters()}
        trainable = {id(p) for p in self.model.parameters() if p.requires_grad}
        if not trainable:
            raise BadInput("the model has no trainable parameters")
        for p in self._params:
            if id(p) not in names:
                raise BadInput(
                    "the optimizer holds a parameter that is not in the model (were LoRA "
                    "weights re-created after the optimizer, e.g. by a device move?)"
                )
            if not p.requires_grad:
                raise BadInput(f"optimizer parameter {names[id(p)]} is frozen")
        missing = trainable - {id(p) for p in self._params}
        if missing:
            absent = sorted(names[i] for i in missing)
            raise BadInput(f"trainable parameters not in the optimizer: {absent}")
        return [names[id(p)] for p in self._params]

    def _setup_opacus(self) -> None:
        from opacus.grad_sample.utils import prepare_module
        from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping

        mode, cfg = self.config.grad_sample_mode, self.config
        kwargs: dict[str, Any] = {"batch_first": True, "loss_reduction": "mean", "strict": True}
        if mode == "ghost":
            kwargs.update(max_grad_norm=cfg.max_grad_norm, use_ghost_clipping=True)
        self._hooks = prepare_module(self.model, mode, False, **kwargs)
        hooked = self._hooks.iterate_submodules(self.model)
        covered = {id(p) for m in hooked for p in m.parameters()}
        pairs = zip(self._names, self._params, strict=True)
        uncovered = [n for n, p in pairs if id(p) not in covered]
        if uncovered:
            raise UnsupportedLayerError(f"Opacus attached no per-sample hook for {uncovered}")
        opt_cls = DPOptimizerFastGradientClipping if mode == "ghost" else DPOptimizer
        self._dp_opt = opt_cls(
            self.optimizer,
            noise_multiplier=cfg.noise_multiplier,
            max_grad_norm=cfg.max_grad_norm,
            expected_batch_size=cfg.expected_batch_size,  # type: ignore[arg-type]
            loss_reduction="mean",
            generator=self._noise_gen,
            secure_mode=cfg.secure,
        )

    def make_loader(
        self,
        dataset: torch.utils.data.Dataset,  # type: ignore[type-arg]
        *,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        steps: int | None = None,
    ) -> torch.utils.data.DataLoader:  # type: ignore[type-arg]
        """Poisson-sampled batches (Opacus's sampler) drawn from this trainer's generator.

        Args:
            dataset: the ``dataset_size`` private records.
            collate_fn: builds a mapping of tensors from a list of records.
            steps: number of batches (default ``1 / sample_rate``, one expected epoch).
        """
        from opacus.data_loader import CollateFnWithEmpty
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler
        from torch.utils.data import DataLoader, default_collate

        if len(dataset) != self.config.dataset_size:  # type: ignore[arg-type]
            raise BadInput("dataset size differs from DPConfig.dataset_size")
        sampler = UniformWithReplacementSampler(
            num_samples=self.config.dataset_size,
            sample_rate=self.config.sample_rate,
            generator=self._sample_gen,
            steps=steps,
        )
        collate = CollateFnWithEmpty(collate_fn or default_collate)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)

    def step(self, batch: Mapping[str, Tensor] | MicroBatches) -> float:
        """One DP-SGD step; the step is charged to the accountant (empty batches too).

        Args:
            batch: a batch from :meth:`make_loader` (or the same batch split into
                :class:`MicroBatches`). The epsilon assumes Poisson sampling at
                ``sample_rate``; fixed-size shuffled batches void it.

        Returns:
            The batch's mean loss. It is NOT privatized: use it for local
            monitoring only, never release or log it as a DP statistic.
        """
        self.model.train()
        snapshot = None if self._checked_motion else [p.detach().clone() for p in self._params]
        b = _batch_len(batch)
        if self._collector is not None:
            loss = self._fast_step(batch, b)
        else:
            if isinstance(batch, MicroBatches):
                if len(batch.parts) != 1:
                    raise BadInput("micro-batches need grad_sample_mode='lora-fast'")
                batch = batch.parts[0]
            loss = self._opacus_step(batch, b)
        self._accountant.step(
            noise_multiplier=self.config.noise_multiplier, sample_rate=self.config.sample_rate
        )
        self._steps += 1
        if snapshot is not None:
            self._check_motion(snapshot)
        return loss

    def _fast_step(self, batch: Mapping[str, Tensor] | MicroBatches, b: int) -> float:
        from opacus.optimizers.optimizer import _generate_noise

        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        parts = batch.parts if isinstance(batch, MicroBatches) else (batch,)
        sums = [torch.zeros_like(p) for p in self._params]
        loss_sum = 0.0
        for part in parts:
            n = _batch_len(part)
            if n == 0:
                continue
            part_sums, part_loss = self._clipped_sum(part, n)
            for s, ps in zip(sums, part_sums, strict=True):
                s.add_(ps)
            loss_sum += part_loss
        std = cfg.noise_multiplier * cfg.max_grad_norm
        for p, s in zip(self._params, sums, strict=True):
            noise = _generate_noise(std, s, self._noise_gen, cfg.secure)
            p.grad = (s + noise) / cfg.expected_batch_size
        self.optimizer.step()
        return loss_sum / b if b else 0.0

    def _clipped_sum(self, batch: Mapping[str, Tensor], b: int) -> tuple[list[Tensor], float]:
        """Sum over the batch of each example's clipped gradient, and the summed loss."""
        assert self._collector is not None
        self._collector.start()
        try:
            losses = self.loss_fn(self.model, batch)
            losses.sum().backward()
        finally:
            self._collector.stop()
        grads = self._collector.pop()
        self._require(grads, b)
        sums, _ = clip_and_sum(grads, self.config.max_grad_norm,  # type: ignore[arg-type]
                               self._clip_groups)
        return [s.view_as(p) for s, p in zip(sums, self._params, strict=True)], \
            float(losses.detach().sum())

    def _opacus_step(self, batch: Mapping[str, Tensor], b: int) -> float:
        from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

        ghost = self.config.grad_sample_mode == "ghost"
        self._dp_opt.zero_grad(set_to_none=True)
        loss = 0.0
        if b == 0:  # Opacus's own empty-batch path: zero per-sample grads, noise only
            for p in self._params:
                if ghost:
                    p.grad = torch.zeros_like(p)
                else:
                    p.grad_sample = p.new_zeros((0, *p.shape))  # type: ignore[attr-defined]
        else:
            losses = self.loss_fn(self.model, batch)
            loss = float(losses.detach().mean())
            if ghost:
                try:
                    hooks, opt = self._hooks, self._dp_opt
                    DPTensorFastGradientClipping(hooks, opt, losses, "mean").backward()
                except AttributeError as err:  # a parameter without _norm_sample
                    raise RuntimeError(f"ghost clipping found no per-sample norm: {err}") from err
            else:
                losses.mean().backward()
                self._require([getattr(p, "grad_sample", None) for p in self._params], b)
        self._dp_opt.step()
        return loss

    def _require(self, grads: list[Any], b: int) -> None:
        absent = [n for n, g in zip(self._names, grads, strict=True) if g is None]
        if absent:
            raise RuntimeError(
                f"no per-sample gradient for trainable parameters {absent}: they would escape "
                "clipping (unused in forward, or not hooked)"
            )
        bad = [n for n, g in zip(self._names, grads, strict=True) if g.shape[0] != b]
        if bad:
            raise RuntimeError(
                f"per-sample gradients of {bad} do not have one row per example: the model "
                "broadcasts an input (e.g. BERT position_ids/token_type_ids); pass it per example"
            )

    def _check_motion(self, snapshot: list[Tensor]) -> None:
        self._checked_motion = True
        for name, p, before in zip(self._names, self._params, snapshot, strict=True):
            moved_grad = p.grad is not None and bool(p.grad.abs().sum() > 0)
            if moved_grad and torch.equal(p.detach(), before):
                raise RuntimeError(
                    f"trainable parameter {name} did not change after the first DP step "
                    "despite a non-zero gradient (frozen-LoRA pitfall or zero learning rate)"
                )

    @property
    def steps_taken(self) -> int:
        """Number of DP-SGD steps taken (each one is charged to the accountant)."""
        return self._steps

    def epsilon(self, delta: float, accountant: str | None = None) -> float:
        """Epsilon spent so far at ``delta``, for one record added or removed.

        Args:
            delta: target delta (per record; typically < 1/N).
            accountant: override the configured accountant ("prv", "rdp", "gdp").
        """
        from opacus.accountants import create_accountant

        from veil.privacy.accounting import epsilon_from_history

        if self._steps == 0:
            return 0.0
        name = accountant or self.config.accountant
        if name in ("prv", "rdp"):
            # the same accountant settings as the noise calibration, so a run calibrated
            # to a target ε reports that ε (Opacus's default PRV slack would add ~0.01)
            history = [(float(s), float(q), int(k)) for s, q, k in self._accountant.history]
            return float(epsilon_from_history(history, delta, name))  # type: ignore[arg-type]
        acc = create_accountant(name)
        acc.history = copy.deepcopy(self._accountant.history)
        return float(acc.get_epsilon(delta=delta))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: weights, optimizer, accountant history, RNG states.

        In ``secure`` mode the noise generator state is NOT saved (it would let
        anyone holding the checkpoint recompute the noise); resuming reseeds it.
        """
        return {
            "config": asdict(self.config),
            "steps": self._steps,
            "trainable": {
                n: p.detach().clone() for n, p in zip(self._names, self._params, strict=True)
            },
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "accountant_history": copy.deepcopy(self._accountant.history),
            "noise_rng": None if self.config.secure else self._noise_gen.get_state(),
            "sample_rng": None if self.config.secure else self._sample_gen.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` into a trainer built the same way."""
        if list(state["trainable"]) != self._names:
            raise BadInput("checkpoint's trainable parameters differ from this model's")
        with torch.no_grad():
            for p, n in zip(self._params, self._names, strict=True):
                p.copy_(state["trainable"][n])
        self.optimizer.load_state_dict(state["optimizer"])
        self._accountant.history = copy.deepcopy(state["accountant_history"])
        self._steps = int(state["steps"])
        self._checked_motion = self._steps > 0
        if state["noise_rng"] is not None and not self.config.secure:
            self._noise_gen.set_state(state["noise_rng"])
        if state["sample_rng"] is not None and not self.config.secure:
            self._sample_gen.set_state(state["sample_rng"])

    def close(self) -> None:
        """Remove all hooks from the model (it can then be evaluated or saved freely)."""
        if self._collector is not None:
            self._collector.remove()
        if self._hooks is not None:
            self._hooks.remove_hooks()
