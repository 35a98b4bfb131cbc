"""The generator: LoRA adapters, DP fine-tuning at strong sites, FedAvg, batched sampling.

Phase 1 (strong sites, :func:`dp_finetune`): LoRA on the causal LM, trained
with per-record DP-SGD (:class:`veil.privacy.dpsgd.DPTrainer`, Poisson
sampling at the public rate q, clipping C, noise multiplier σ from
:mod:`veil.synth.budget`) on ``control code prefix + text``. Only the adapter
weights leave the site; ε is per record of the site, composed over all
rounds. Phase 3 (server, :func:`generate`): sample from the FedAvg-averaged
adapters, prompted by each code's prefix — post-processing of DP outputs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from veil.synth.config import SynthConfig

Adapter = dict[str, np.ndarray]


@lru_cache(maxsize=2)
def _base(name: str) -> tuple[Any, Any]:
    from veil.models import load_causal_lm

    model, tokenizer = load_causal_lm(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_generator(name: str) -> tuple[Any, Any]:
    """A fresh copy of the base causal LM (eval mode) and its tokenizer (cached per process)."""
    model, tokenizer = _base(name)
    return copy.deepcopy(model), tokenizer


def lora_model(name: str, cfg: SynthConfig) -> tuple[Any, Any]:
    """``(PEFT model with fresh LoRA adapters, tokenizer)``; init from torch's global RNG."""
    from veil.privacy.dpsgd import add_lora

    model, tokenizer = load_generator(name)
    return add_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, task="causal_lm"), tokenizer


def get_adapter(model: Any) -> Adapter:
    """The LoRA weights of ``model`` as float32 numpy arrays (what strong sites send)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    return {k: v.detach().cpu().float().numpy().copy() for k, v in state.items()}


def set_adapter(model: Any, adapter: Mapping[str, np.ndarray]) -> None:
    """Load LoRA weights into ``model`` (shapes and names must match)."""
    import torch
    from peft import set_peft_model_state_dict

    state = {k: torch.from_numpy(np.asarray(v, dtype=np.float32).copy())
             for k, v in adapter.items()}
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"adapter has {len(unexpected)} unexpected weights")


def initial_adapter(cfg: SynthConfig, seed: int) -> Adapter:
    """The round-0 adapters (LoRA A random from ``seed``, B zero), made by the server."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _ = lora_model(cfg.generator, cfg)
    return get_adapter(model)


def fedavg(adapters: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> Adapter:
    """Weighted average of adapters (weights normalised; all must share their keys)."""
    if not adapters:
        raise ValueError("no adapters to average")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(adapters),) or not np.all(w >= 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    w = w / w.sum()
    keys = list(adapters[0])
    if any(list(a) != keys for a in adapters[1:]):
        raise ValueError("adapters disagree on their weights")
    out: Adapter = {}
    for k in keys:
        acc = np.zeros(np.shape(adapters[0][k]), dtype=np.float64)
        for wi, a in zip(w, adapters, strict=True):
            acc += float(wi) * np.asarray(a[k], dtype=np.float64)
        out[k] = acc.astype(np.float32)
    return out


def _collate(pad_id: int) -> Any:
    import torch

    def collate(items: list[list[int]]) -> dict[str, Any]:
        width = max(len(x) for x in items)
        ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, x in enumerate(items):
            ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, :len(x)] = 1
        return {"input_ids": ids, "attention_mask": mask,
                "labels": ids.masked_fill(mask == 0, -100)}

    return collate


def dp_finetune(model: Any, tokenizer: Any, texts: Sequence[str], cfg: SynthConfig, *,
                noise_multiplier: float, steps: int, seed: int | None) -> tuple[Adapter, int]:
    """One round of local DP-SGD on LoRA adapters; returns ``(adapters, steps taken)``.

    Args:
        model: PEFT model holding the current global adapters.
        tokenizer: its tokenizer.
        texts: ``prefix + text`` training strings of this site (never sent anywhere).
        cfg: run config (q, C, lr, max_length).
        noise_multiplier: σ of DP-SGD (0 only for ε = ∞).
        steps: Poisson-sampled steps this round (each charged to the accountant).
        seed: seed of sampling and noise (None: OS entropy).

    Returns:
        The trained adapter weights (the only thing the site releases) and the steps.
        The per-record guarantee is accounted by :mod:`veil.synth.budget` from
        ``(σ, q, steps)``; the trainer's own accountant sees the same history.
    """
    import torch

    from veil.privacy.dpsgd import DPConfig, DPTrainer, causal_lm_loss

    eos = tokenizer.eos_token or ""
    encoded = [tokenizer(t + eos, truncation=True, max_length=cfg.max_length)["input_ids"]
               for t in texts]
    config = DPConfig(noise_multiplier=noise_multiplier, max_grad_norm=cfg.max_grad_norm,
                      sample_rate=cfg.sample_rate, dataset_size=len(encoded),
                      accountant=cfg.accountant, secure=cfg.secure, seed=seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    trainer = DPTrainer(model, optimizer, config, causal_lm_loss)
    try:
        loader = trainer.make_loader(encoded,  # type: ignore[arg-type]
                                     collate_fn=_collate(tokenizer.pad_token_id),
                                     steps=steps)
        for batch in loader:
            trainer.step(batch)
    finally:
        trainer.close()
    model.eval()
    return get_adapter(model), trainer.steps_taken


def generation_model(cfg: SynthConfig, adapter: Mapping[str, np.ndarray] | None) -> tuple[Any, Any]:
    """The generator for phase 3: base model with ``adapter`` merged in (None: base only)."""
    if adapter is None:
        model, tokenizer = load_generator(cfg.generator)
        return model.eval(), tokenizer
    model, tokenizer = lora_model(cfg.generator, cfg)
    set_adapter(model, adapter)
    return model.merge_and_unload().eval(), tokenizer


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], cfg: SynthConfig,
             seed: int) -> list[str]:
    """Sample one continuation per prompt, in batches of ``cfg.gen_batch_size``.

    Plain ``model.generate`` (temperature, top-p, ``max_new_tokens``) on left-padded
    batches; torch's RNG is seeded from ``seed`` inside a forked RNG state.
    Returns the decoded continuations without the prompt, stripped.
    """
    import torch

    out: list[str] = []
    tokenizer.padding_side = "left"
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)
        for start in range(0, len(prompts), cfg.gen_batch_size):
            batch = list(prompts[start:start + cfg.gen_batch_size])
            enc = tokenizer(batch, return_tensors="pt", padding=True)
            gen = model.generate(
                **enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
                max_new_tokens=cfg.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1]:]
            out.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    return out


def candidates_per_code(quotas: Sequence[int], factor: float, refine: bool) -> list[int]:
    """Candidates to generate per code: ``ceil(factor · quota)`` when refining, else the quota."""
    return [math.ceil(factor * q) if refine else int(q) for q in quotas]
