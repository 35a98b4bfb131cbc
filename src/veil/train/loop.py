"""The training loop: DP-SGD through :class:`veil.privacy.dpsgd.DPTrainer`, or plain AdamW.

With finite ε every step is a DP-SGD step of the shared engine: Poisson
sampling at rate ``q = batch_size / n``, each record's gradient clipped to
``clip``, Gaussian noise ``σ · clip`` added to the sum. σ is calibrated before
the first step so that the planned ``epochs · round(n / batch_size)`` steps end
at the target ε (PRV accountant; RDP when asked, or when PRV cannot certify
the target — PRV is unreliable above ε ≈ 10). ε protects each *training
record* (add/remove one row). With ε = ∞ the same model trains with ordinary
shuffled mini-batches and no clipping or noise.

Every epoch ends with a checkpoint; ``resume_state`` continues a run exactly
(same batches, same noise, same accountant history), so the final ε equals
that of an uninterrupted run. With ``ema_decay`` > 0 the run releases (and
validates) an exponential moving average of its iterates instead of the last one:
post-processing, so σ, the steps and ε are unchanged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from veil.privacy import accounting
from veil.privacy.dpsgd import LossFn, MicroBatches
from veil.privacy.rng import make_torch_generator
from veil.progress import info, make_progress
from veil.train.averaging import WeightAverage
from veil.train.checkpoint import Checkpointer
from veil.train.classifier import pad, pad_states
from veil.train.config import TrainConfig

Example = tuple[Any, Any]
Validate = Callable[[nn.Module], dict[str, float]]
EpochHook = Callable[[int, dict[str, Any]], None]


@dataclass
class FitResult:
    """What the loop did, and the privacy it spent (per training record)."""

    steps: int
    epochs: int
    n_train: int
    sample_rate: float
    noise_multiplier: float
    delta: float
    accountant: str
    epsilon: float
    epsilon_rdp: float | None
    epsilon_prv: float | None
    curve: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def record_loss(multi_label: bool) -> LossFn:
    """Per-record loss: cross-entropy, or BCE *summed* over labels (the engine's loss × L).

    Summing (not averaging) over labels keeps per-record gradient norms of the same
    order whatever the number of labels, so one default clipping norm fits all tasks
    (on IU X-ray with minilm they are ≈ 10–40, the head's share ≈ 20 and the LoRA
    adapters' ≈ 2: C = 1 clips every record, where DP-SGD wastes least).
    """
    from veil.privacy.dpsgd import classification_loss

    if not multi_label:
        return classification_loss("single_label")
    mean_bce = classification_loss("multi_label")

    def loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
        return mean_bce(model, batch) * batch["labels"].shape[-1]

    return loss


def collate(items: list[Example]) -> dict[str, Tensor]:
    """Batch ``(window ids | cached states | {name: fixed-size tensor}, target)`` pairs.

    Windows and cached states are right-padded; mappings of fixed-size tensors
    (the evidence adapter's feature rows) are stacked.
    """
    xs = [x for x, _ in items]
    if isinstance(xs[0], Mapping):
        batch = {k: torch.stack([x[k] for x in xs]) for k in xs[0]}
    else:
        batch = pad_states(xs) if isinstance(xs[0], Tensor) else pad(xs)
    batch["labels"] = torch.stack([torch.as_tensor(y) for _, y in items])
    return batch


MICRO_BATCH = 32
"""Examples per physical micro-batch of a DP step (sorted by length: less padding)."""
SEQUENCE_KEYS = ("input_ids", "attention_mask", "position_ids", "token_type_ids",
                 "prefix_states")


def split_by_length(batch: Any, size: int = MICRO_BATCH) -> Any:
    """A padded batch as :class:`MicroBatches` of ≤ ``size`` examples of similar length.

    Each micro-batch is cut to its own longest example (right padding only), so
    no real token is dropped; the DP step's clipped sum is unchanged. Batches of
    at most ``size`` examples, batches without sequences (fixed-size feature rows)
    and Opacus's empty ``[]`` are returned as they are.
    """
    if (not isinstance(batch, Mapping) or int(batch["labels"].shape[0]) <= size
            or "attention_mask" not in batch):
        return batch
    unknown = set(batch) - set(SEQUENCE_KEYS) - {"labels"}
    if unknown:
        raise ValueError(f"split_by_length does not know how to cut {sorted(unknown)}")
    b = int(batch["labels"].shape[0])
    lengths = batch["attention_mask"].sum(1)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for start in range(0, b, size):
        idx = order[start:start + size]
        t = int(lengths[idx].max())
        parts.append({k: v[idx, :t] if k in SEQUENCE_KEYS else v[idx] for k, v in batch.items()})
    return MicroBatches(tuple(parts))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """``round(n / batch_size)``, at least 1: one expected pass over the records."""
    return max(1, round(n / batch_size))


def calibrate(config: TrainConfig, n: int, delta: float) -> tuple[float, str, list[str]]:
    """σ for the planned steps, the accountant that certifies it, and notes.

    Raises:
        ValueError: neither PRV nor RDP can reach the target ε.
    """
    q = config.batch_size / n
    total = config.epochs * steps_per_epoch(n, config.batch_size)
    sigma, acc, note = _calibrate(config.epsilon, delta, q, total, config.accountant)
    if note:
        info(note)
    return sigma, acc, [note] if note else []


@functools.lru_cache(maxsize=64)
def _calibrate(epsilon: float, delta: float, q: float, steps: int, accountant: str
               ) -> tuple[float, str, str]:
    """Cached (a pure function of its arguments; a calibration costs seconds)."""
    if accountant == "prv":
        try:
            sigma = accounting.calibrate_noise_multiplier(epsilon, delta, q, steps, "prv")
            return sigma, "prv", ""
        except (ValueError, RuntimeError, OverflowError) as exc:
            note = (f"PRV could not calibrate ε = {epsilon:g} ({type(exc).__name__}); "
                    "noise calibrated and ε certified with the RDP accountant instead")
            return accounting.calibrate_noise_multiplier(epsilon, delta, q, steps, "rdp"), \
                "rdp", note
    return accounting.calibrate_noise_multiplier(epsilon, delta, q, steps, "rdp"), "rdp", ""


def clip_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Trainable weights split into the classification head and everything else."""
    head = [p for n, p in model.named_parameters() if p.requires_grad and "classifier." in n]
    rest = [p for n, p in model.named_parameters()
            if p.requires_grad and "classifier." not in n]
    return [g for g in (head, rest) if g]


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based) of ``total``."""
    if schedule == "constant" or total <= 0:
        return 1.0
    done = min(step, total) / total
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * done))
    if schedule == "linear":
        return 1.0 - done
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


def _scheduler(opt: torch.optim.Optimizer, config: TrainConfig, total: int
               ) -> torch.optim.lr_scheduler.LambdaLR:
    """The run's learning-rate schedule over its ``total`` planned optimizer steps."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, functools.partial(lr_factor, config.lr_schedule, total=total))


def _averaging(model: nn.Module, config: TrainConfig, state: dict[str, Any] | None
               ) -> WeightAverage | None:
    """The EMA of the trainable weights when ``config.ema_decay`` > 0 (restored on resume)."""
    if config.ema_decay <= 0.0:
        return None
    average = WeightAverage((p for p in model.parameters() if p.requires_grad), config.ema_decay)
    if state is not None:
        average.load_state_dict(state["ema"])
    return average


def _epoch_end(epoch: int, step: int, eps: float, validate: Validate | None, model: nn.Module,
               curve: list[dict[str, float]], average: WeightAverage | None) -> None:
    point = {"epoch": float(epoch), "step": float(step), "epsilon": eps}
    if validate is not None:
        if average is None:
            point.update(validate(model))
        else:  # the curve shows what would be released: the averaged weights
            with average.swapped_in():
                point.update(validate(model))
    curve.append(point)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in point.items() if k not in ("epoch", "step"))
    info(f"epoch {epoch}: {shown}")


def _ema_state(average: WeightAverage | None) -> dict[str, Any]:
    return {} if average is None else {"ema": average.state_dict()}


def fit(
    model: nn.Module,
    examples: list[Example],
    config: TrainConfig,
    *,
    validate: Validate | None = None,
    checkpointer: Checkpointer | None = None,
    on_epoch_end: EpochHook | None = None,
) -> FitResult:
    """Train ``model`` on ``examples`` (one per training record) for ``config.epochs``.

    Args:
        model: the classifier with its trainable weights selected.
        examples: ``(window ids or cached states, target)`` per training record.
        config: the run's options (ε, δ, batch, clip, lr, epochs, seed, ...).
        validate: per-epoch validation figures for the curve (held-out records).
        checkpointer: where epoch checkpoints go; resumed when ``config.resume``.
        on_epoch_end: called with ``(epoch, curve point)`` after each checkpoint.
    """
    n = len(examples)
    delta = config.delta if config.delta is not None else accounting.default_delta(n)
    state = checkpointer.load() if (checkpointer is not None and config.resume) else None
    if config.resume:
        info("resuming from the last checkpoint" if state else "no checkpoint found: "
             "starting from the first epoch")
    torch.manual_seed(config.seed)  # dropout
    if config.private:
        return _fit_dp(model, examples, config, delta, state, validate, checkpointer,
                       on_epoch_end)
    return _fit_plain(model, examples, config, delta, state, validate, checkpointer, on_epoch_end)


def _fit_dp(model: nn.Module, examples: list[Example], config: TrainConfig, delta: float,
            state: dict[str, Any] | None, validate: Validate | None,
            checkpointer: Checkpointer | None, hook: EpochHook | None) -> FitResult:
    from veil.privacy.dpsgd import DPConfig, DPTrainer

    n = len(examples)
    q = config.batch_size / n
    if state is not None:
        sigma, acc, notes = state["noise_multiplier"], state["accountant"], state["notes"]
    else:
        sigma, acc, notes = calibrate(config, n, delta)
    mode = "hooks" if config.adapter == "full" else "lora-fast"
    dp = DPConfig(noise_multiplier=sigma, max_grad_norm=config.clip, sample_rate=q,
                  dataset_size=n, accountant=acc, grad_sample_mode=mode,  # type: ignore[arg-type]
                  secure=config.secure, seed=config.seed)
    opt = _optimizer(model, config)
    trainer = DPTrainer(model, opt, dp, record_loss(config.multi_label),
                        clip_groups=clip_groups(model) if config.clipping == "group" else None)
    per_epoch = steps_per_epoch(n, config.batch_size)
    schedule = _scheduler(opt, config, config.epochs * per_epoch)
    curve: list[dict[str, float]] = []
    first = 0
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        if "lr_schedule" in state:  # checkpoints from before --lr-schedule: constant
            schedule.load_state_dict(state["lr_schedule"])
        torch.set_rng_state(state["torch_rng"])
        curve, first = list(state["curve"]), int(state["epoch"])
    average = _averaging(model, config, state)
    info(f"DP-SGD: n = {n}, q = {q:.4g}, σ = {sigma:.4g}, C = {config.clip:g}, "
         f"{config.epochs * per_epoch} steps, target ε = {config.epsilon:g}, δ = {delta:.3g} "
         f"({acc.upper()})")
    try:
        for epoch in range(first + 1, config.epochs + 1):
            loader = trainer.make_loader(examples, collate_fn=collate,  # type: ignore[arg-type]
                                         steps=per_epoch)
            with make_progress() as bar:
                task_id = bar.add_task(f"epoch {epoch}/{config.epochs}", total=per_epoch)
                for batch in loader:
                    trainer.step(split_by_length(batch) if mode == "lora-fast" else batch)
                    schedule.step()
                    if average is not None:
                        average.update()
                    bar.advance(task_id)
            eps = trainer.epsilon(delta)
            _epoch_end(epoch, trainer.steps_taken, eps, validate, model, curve, average)
            if checkpointer is not None:
                checkpointer.save({"epoch": epoch, "trainer": trainer.state_dict(),
                                   "lr_schedule": schedule.state_dict(),
                                   "torch_rng": torch.get_rng_state(), "curve": curve,
                                   "noise_multiplier": sigma, "accountant": acc,
                                   "notes": notes, **_ema_state(average)})
            if hook is not None:
                hook(epoch, dict(curve[-1]))
        eps_rdp = trainer.epsilon(delta, "rdp")
        try:
            eps_prv: float | None = trainer.epsilon(delta, "prv")
        except (ValueError, RuntimeError, OverflowError):
            eps_prv = None
        if average is not None:
            average.copy_to_model()
        return FitResult(steps=trainer.steps_taken, epochs=config.epochs, n_train=n,
                         sample_rate=q, noise_multiplier=sigma, delta=delta, accountant=acc,
                         epsilon=trainer.epsilon(delta), epsilon_rdp=eps_rdp,
                         epsilon_prv=eps_prv, curve=curve, notes=list(notes))
    finally:
        trainer.close()


def _fit_plain(model: nn.Module, examples: list[Example], config: TrainConfig, delta: float,
               state: dict[str, Any] | None, validate: Validate | None,
               checkpointer: Checkpointer | None, hook: EpochHook | None) -> FitResult:
    n = len(examples)
    loss_fn = record_loss(config.multi_label)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(model, config)
    per_epoch = math.ceil(n / config.batch_size)
    schedule = _scheduler(opt, config, config.epochs * per_epoch)
    gen = make_torch_generator(config.seed)
    curve: list[dict[str, float]] = []
    first, steps = 0, 0
    if state is not None:
        with torch.no_grad():
            for p, saved in zip(params, state["weights"], strict=True):
                p.copy_(saved)
        opt.load_state_dict(state["optimizer"])
        if "lr_schedule" in state:  # checkpoints from before --lr-schedule: constant
            schedule.load_state_dict(state["lr_schedule"])
        gen.set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
        curve, first, steps = list(state["curve"]), int(state["epoch"]), int(state["steps"])
    average = _averaging(model, config, state)
    info(f"non-private training (ε = ∞): n = {n}, batch {config.batch_size}, "
         f"{config.epochs * per_epoch} steps")
    for epoch in range(first + 1, config.epochs + 1):
        order = torch.randperm(n, generator=gen).tolist()
        model.train()
        with make_progress() as bar:
            task_id = bar.add_task(f"epoch {epoch}/{config.epochs}", total=per_epoch)
            for s in range(0, n, config.batch_size):
                batch = collate([examples[i] for i in order[s:s + config.batch_size]])
                loss = loss_fn(model, batch).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                if average is not None:
                    average.update()
                steps += 1
                bar.advance(task_id)
        _epoch_end(epoch, steps, math.inf, validate, model, curve, average)
        if checkpointer is not None:
            checkpointer.save({"epoch": epoch, "steps": steps, "curve": curve,
                               "weights": [p.detach().clone() for p in params],
                               "optimizer": opt.state_dict(), "shuffle_rng": gen.get_state(),
                               "lr_schedule": schedule.state_dict(),
                               "torch_rng": torch.get_rng_state(), **_ema_state(average)})
        if hook is not None:
            hook(epoch, dict(curve[-1]))
    if average is not None:
        average.copy_to_model()
    return FitResult(steps=steps, epochs=config.epochs, n_train=n,
                     sample_rate=min(1.0, config.batch_size / n), noise_multiplier=0.0,
                     delta=0.0, accountant="none", epsilon=math.inf, epsilon_rdp=None,
                     epsilon_prv=None, curve=curve)


def targets(y: np.ndarray) -> list[Tensor]:
    """Per-record target tensors (float rows for multi-label, class ids for multi-class)."""
    return [torch.as_tensor(v) for v in y]
