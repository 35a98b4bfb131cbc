"""DP-SGD engine: per-sample clipping vs a naive loop, Opacus cross-check, LoRA pitfall,
accounting vs dp-accounting, resume."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from veil.errors import BadInput
from veil.privacy.dpsgd import (
    DPConfig,
    DPTrainer,
    add_lora,
    causal_lm_loss,
    classification_loss,
)
from veil.privacy.lora_grads import UnsupportedLayerError

warnings.filterwarnings("ignore", message=".*")
N_LABELS = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_bert(seed: int = 0, adapter: str = "lora", task: str = "single_label") -> nn.Module:
    """A seeded 2-layer BERT classifier (no dropout) with LoRA r=4 on query/value."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=200, num_labels=N_LABELS, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = add_lora(BertForSequenceClassification(cfg), r=4, alpha=8, adapter=adapter, task=task)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # LoRA B starts at 0 (then A's gradient is 0): randomise it
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model.double()


def make_batch(b: int, seed: int, multi_label: bool) -> dict[str, torch.Tensor]:
    """Variable-length token batch, right-padded with 0, with its true lengths in 'lengths'."""
    gen = torch.Generator().manual_seed(seed)
    t = 12
    lengths = torch.randint(3, t + 1, (b,), generator=gen)
    ids = torch.randint(1, 200, (b, t), generator=gen)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    if multi_label:
        labels = torch.randint(0, 2, (b, N_LABELS), generator=gen).double()
    else:
        labels = torch.randint(0, N_LABELS, (b,), generator=gen)
    return {"input_ids": ids * mask, "attention_mask": mask, "labels": labels, "lengths": lengths}


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def naive_grads(model: nn.Module, batch: dict, task: str) -> list[list[torch.Tensor]]:
    """Each example alone, truncated to its own length (no padding), forward/backward."""
    loss_fn = classification_loss(task)  # type: ignore[arg-type]
    params = [p for _, p in trainable(model)]
    out = []
    for i in range(len(batch["labels"])):
        n = int(batch["lengths"][i])
        one = {
            "input_ids": batch["input_ids"][i : i + 1, :n],
            "attention_mask": batch["attention_mask"][i : i + 1, :n],
            "labels": batch["labels"][i : i + 1],
        }
        loss = loss_fn(model, one).sum()
        out.append(list(torch.autograd.grad(loss, params)))
    return out


def clipped_sum(per_example: list[list[torch.Tensor]], c: float) -> list[torch.Tensor]:
    total = [torch.zeros_like(g) for g in per_example[0]]
    for grads in per_example:
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        factor = min(1.0, c / (float(norm) + 1e-6))
        total = [t + factor * g for t, g in zip(total, grads, strict=True)]
    return total


def engine_update(model: nn.Module, batch: dict, cfg: DPConfig, task: str) -> list[torch.Tensor]:
    """Run one engine step with SGD(lr=1) and return -delta * expected batch size."""
    params = [p for _, p in trainable(model)]
    before = [p.detach().clone() for p in params]
    trainer = DPTrainer(model, torch.optim.SGD(params, lr=1.0), cfg, classification_loss(task))  # type: ignore[arg-type]
    trainer.step({k: v for k, v in batch.items() if k != "lengths"})
    trainer.close()
    return [(b - p.detach()) * cfg.expected_batch_size for b, p in zip(before, params, strict=True)]


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
@pytest.mark.parametrize("adapter", ["lora", "head", "lora-freeze-a"])
def test_fast_path_equals_naive_per_example_loop(task: str, adapter: str) -> None:
    from veil.train.classifier import freeze_lora_a

    batch = make_batch(6, seed=1, multi_label=task == "multi_label")
    model = tiny_bert(adapter=adapter.removesuffix("-freeze-a"), task=task)
    if adapter == "lora-freeze-a":  # FFA-LoRA: only B (and the head) carry gradients
        assert freeze_lora_a(model) == 4
        assert not any("lora_A" in n for n, _ in trainable(model))
        assert any("lora_B" in n for n, _ in trainable(model))
    per_example = naive_grads(model, batch, task)
    norms = sorted(float(torch.sqrt(sum(g.pow(2).sum() for g in gs))) for gs in per_example)
    c = norms[len(norms) // 2]  # about half the examples are clipped
    assert norms[0] < c < norms[-1]
    expected = clipped_sum(per_example, c)
    cfg = DPConfig(noise_multiplier=0.0, max_grad_norm=c, sample_rate=0.1, dataset_size=50, seed=0)
    got = engine_update(model, batch, cfg, task)
    for name_p, g, e in zip(trainable(model), got, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-5, rtol=1e-5), name_p[0]
    if adapter == "lora":
        assert any("lora_A" in n for n, _ in trainable(model))
        assert all(e.abs().sum() > 0 for e in expected)


@pytest.mark.parametrize("mode", ["hooks", "functorch", "ghost"])
def test_fast_path_matches_opacus_modes_including_noise(mode: str) -> None:
    batch = make_batch(5, seed=2, multi_label=False)
    kwargs = {"noise_multiplier": 0.7, "max_grad_norm": 0.05, "sample_rate": 0.1,
              "dataset_size": 40, "seed": 11}
    fast = engine_update(tiny_bert(), batch, DPConfig(**kwargs), "single_label")  # type: ignore[arg-type]
    other = engine_update(
        tiny_bert(), batch, DPConfig(grad_sample_mode=mode, **kwargs), "single_label"  # type: ignore[arg-type]
    )
    for a, b in zip(fast, other, strict=True):
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-6)


def test_lora_weights_change_and_backbone_stays_frozen() -> None:
    model = tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = [p for _, p in trainable(model)]
    cfg = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.1, dataset_size=40,
                   seed=0)
    trainer = DPTrainer(model, torch.optim.Adam(params, lr=1e-2), cfg, classification_loss())
    batch = make_batch(4, seed=3, multi_label=False)
    batch.pop("lengths")
    trainer.step(batch)
    for name, p in model.named_parameters():
        moved = not torch.equal(p.detach(), before[name])
        assert moved == p.requires_grad, name
    lora = [n for n, _ in trainable(model) if "lora_" in n]
    assert len(lora) == 8 and any("classifier" in n for n, _ in trainable(model))


def test_setup_refuses_stale_optimizer_and_unsupported_layers() -> None:
    model = tiny_bert()
    opt = torch.optim.SGD([p for _, p in trainable(model)], lr=0.1)
    cfg = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.1, dataset_size=40)
    # The PEFT pitfall: LoRA weights re-created after the optimizer was built.
    lora_a = model.base_model.model.bert.encoder.layer[0].attention.self.query.lora_A["default"]
    lora_a.weight = nn.Parameter(lora_a.weight.detach().clone())
    with pytest.raises(BadInput, match=r"not in the model|not in the optimizer"):
        DPTrainer(model, opt, cfg, classification_loss())
    full = tiny_bert(adapter="full")
    opt = torch.optim.SGD(full.parameters(), lr=0.1)
    with pytest.raises(UnsupportedLayerError, match=r"Embedding|LayerNorm"):
        DPTrainer(full, opt, cfg, classification_loss())
    with pytest.raises(BadInput):
        DPConfig(noise_multiplier=1.0, max_grad_norm=0.0, sample_rate=0.1, dataset_size=40)


def test_full_finetuning_runs_with_opacus_hooks() -> None:
    model = tiny_bert(adapter="full")
    cfg = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.1, dataset_size=40,
                   grad_sample_mode="hooks", seed=0)
    trainer = DPTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), cfg,
                        classification_loss())
    emb = model.bert.embeddings.word_embeddings.weight.detach().clone()
    batch = make_batch(3, seed=4, multi_label=False)
    batch.pop("lengths")
    with pytest.raises(RuntimeError, match="one row per example"):
        trainer.step(batch)  # BERT broadcasts its position_ids/token_type_ids buffers
    model.zero_grad()
    batch["position_ids"] = torch.arange(12).expand(3, 12)
    batch["token_type_ids"] = torch.zeros(3, 12, dtype=torch.long)
    trainer.step(batch)
    assert not torch.equal(emb, model.bert.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_epsilon_matches_dp_accounting(accountant: str) -> None:
    import dp_accounting
    from dp_accounting import pld, rdp

    model = tiny_bert()
    sigma, q, n, k, delta = 1.1, 0.05, 40, 12, 1e-5
    cfg = DPConfig(noise_multiplier=sigma, max_grad_norm=1.0, sample_rate=q, dataset_size=n,
                   accountant=accountant, seed=5)  # type: ignore[arg-type]
    trainer = DPTrainer(model, torch.optim.SGD([p for _, p in trainable(model)], lr=0.1), cfg,
                        classification_loss())
    data = [{k2: v[i] for k2, v in make_batch(n, 6, False).items() if k2 != "lengths"}
            for i in range(n)]
    sizes = []
    for batch in trainer.make_loader(data, steps=k):
        sizes.append(len(batch["labels"]) if isinstance(batch, dict) else 0)
        trainer.step(batch)
    assert trainer.steps_taken == k == len(sizes)
    assert 0 in sizes  # q N = 2: empty Poisson batches occur and are charged too
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), k
    )
    if accountant == "rdp":
        ref_acc = rdp.RdpAccountant()
    else:
        ref_acc = pld.PLDAccountant(value_discretization_interval=1e-4)
    reference = ref_acc.compose(event).get_epsilon(delta)
    assert trainer.epsilon(delta) == pytest.approx(reference, rel=0.01)


@pytest.mark.parametrize("mode", ["lora-fast", "hooks"])
def test_resume_matches_uninterrupted_run(mode: str) -> None:
    n, delta = 30, 1e-5
    data = [{k: v[i] for k, v in make_batch(n, 7, False).items() if k != "lengths"}
            for i in range(n)]
    cfg = DPConfig(noise_multiplier=0.9, max_grad_norm=0.5, sample_rate=0.2, dataset_size=n,
                   accountant="rdp", grad_sample_mode=mode, seed=21)  # type: ignore[arg-type]

    def fresh() -> tuple[nn.Module, DPTrainer]:
        model = tiny_bert(seed=3)
        opt = torch.optim.Adam([p for _, p in trainable(model)], lr=1e-2)
        return model, DPTrainer(model, opt, cfg, classification_loss())

    model_a, run_a = fresh()
    for batch in run_a.make_loader(data, steps=4):
        run_a.step(batch)
    _, run_b = fresh()
    for batch in run_b.make_loader(data, steps=2):
        run_b.step(batch)
    state = run_b.state_dict()
    model_c, run_c = fresh()
    run_c.load_state_dict(state)
    for batch in run_c.make_loader(data, steps=2):
        run_c.step(batch)
    assert run_c.steps_taken == 4
    assert run_c.epsilon(delta) == run_a.epsilon(delta)
    assert run_c.epsilon(delta) > run_b.epsilon(delta)
    for (name, pa), (_, pc) in zip(trainable(model_a), trainable(model_c), strict=True):
        assert torch.equal(pa, pc), name


def test_causal_lm_loss_and_llama_lora_fast_path() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    ids = torch.randint(0, 120, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0

    def llama() -> nn.Module:
        torch.manual_seed(0)
        model = add_lora(LlamaForCausalLM(cfg), r=4, task="causal_lm")
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.2)
        return model.double()

    model = llama()
    one = {"input_ids": ids[1:2, :6], "attention_mask": mask[1:2, :6]}
    per = causal_lm_loss(model, {"input_ids": ids, "attention_mask": mask})
    hf = model(**one, labels=one["input_ids"]).loss
    assert torch.allclose(per[1].float(), hf, atol=1e-6)  # HF computes its loss in float32
    updates = []
    for mode in ("lora-fast", "hooks"):
        m = llama()
        params = [p for _, p in trainable(m)]
        before = [p.detach().clone() for p in params]
        dp = DPConfig(noise_multiplier=0.3, max_grad_norm=0.1, sample_rate=0.1, dataset_size=30,
                      grad_sample_mode=mode, seed=2)  # type: ignore[arg-type]
        DPTrainer(m, torch.optim.SGD(params, lr=1.0), dp, causal_lm_loss).step(
            {"input_ids": ids, "attention_mask": mask}
        )
        updates.append([p.detach() - b for p, b in zip(params, before, strict=True)])
    assert len(updates[0]) == 8
    for a, b in zip(*updates, strict=True):
        assert torch.allclose(a, b, atol=1e-9)


def test_micro_batches_give_the_same_noisy_step_as_the_whole_batch() -> None:
    """Splitting a batch (each part cut to its own longest example) changes nothing."""
    from veil.privacy.dpsgd import MicroBatches
    from veil.train.loop import split_by_length

    batch = make_batch(7, seed=4, multi_label=True)
    batch = {k: v for k, v in batch.items() if k != "lengths"}
    t = batch["input_ids"].shape[1]  # as veil.train.classifier.pad builds them
    batch["position_ids"] = torch.arange(t).expand(7, t).clone()
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    kwargs = {"noise_multiplier": 0.9, "max_grad_norm": 0.05, "sample_rate": 0.1,
              "dataset_size": 70, "seed": 5}
    updates = []
    for split in (False, True):
        model = tiny_bert(task="multi_label")
        params = [p for _, p in trainable(model)]
        before = [p.detach().clone() for p in params]
        trainer = DPTrainer(model, torch.optim.SGD(params, lr=1.0), DPConfig(**kwargs),  # type: ignore[arg-type]
                            classification_loss("multi_label"))
        step_batch = split_by_length(batch, size=3) if split else batch
        if split:
            assert isinstance(step_batch, MicroBatches)
            assert [len(p["labels"]) for p in step_batch.parts] == [3, 3, 1]
            widths = [p["input_ids"].shape[1] for p in step_batch.parts]
            assert widths == sorted(widths) and widths[0] < batch["input_ids"].shape[1]
        trainer.step(step_batch)
        trainer.close()
        with pytest.raises(ValueError, match="extra"):
            split_by_length({**batch, "extra": batch["input_ids"]}, size=3)
        updates.append([b - p.detach() for b, p in zip(before, params, strict=True)])
    for whole, micro in zip(*updates, strict=True):
        assert whole.abs().sum() > 0
        assert torch.allclose(whole, micro, atol=1e-10, rtol=1e-8)


def test_opacus_modes_refuse_several_micro_batches() -> None:
    from veil.privacy.dpsgd import MicroBatches

    batch = {k: v for k, v in make_batch(4, seed=6, multi_label=False).items() if k != "lengths"}
    model = tiny_bert()
    params = [p for _, p in trainable(model)]
    cfg = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.1, dataset_size=40,
                   grad_sample_mode="hooks")
    trainer = DPTrainer(model, torch.optim.SGD(params, lr=0.1), cfg,
                        classification_loss("single_label"))
    halves = MicroBatches(tuple({k: v[i:i + 2] for k, v in batch.items()} for i in (0, 2)))
    with pytest.raises(BadInput, match="lora-fast"):
        trainer.step(halves)
    trainer.close()


def test_group_clipping_equals_a_naive_loop_and_keeps_the_norm_bound() -> None:
    """Head and adapters clipped apart to C/√2 each: the naive loop's sum, and norm ≤ C."""
    batch = make_batch(6, seed=8, multi_label=True)
    model = tiny_bert(task="multi_label")
    names = [n for n, _ in trainable(model)]
    head = [i for i, n in enumerate(names) if "classifier." in n]
    assert head and len(head) < len(names)
    per_example = naive_grads(model, batch, "multi_label")
    rest = [i for i in range(len(names)) if i not in head]
    norms = [float(torch.sqrt(sum(g[i].pow(2).sum() for i in group)))
             for g in per_example for group in (head, rest)]
    bound = 0.5 * min(norms)  # every group of every example is clipped
    c = bound * 2 ** 0.5
    expected = [torch.zeros_like(g) for g in per_example[0]]
    for grads in per_example:
        for group in (head, rest):
            norm = float(torch.sqrt(sum(grads[i].pow(2).sum() for i in group)))
            assert norm > bound  # both groups are really clipped here
            for i in group:
                expected[i] = expected[i] + min(1.0, bound / (norm + 1e-6)) * grads[i]
        clipped = torch.sqrt(sum(
            (min(1.0, bound / (float(torch.sqrt(sum(grads[j].pow(2).sum() for j in g))) + 1e-6))
             * grads[i]).pow(2).sum()
            for g in (head, rest) for i in g))
        assert float(clipped) <= c * (1 + 1e-9)
    params = [p for _, p in trainable(model)]
    groups = [[params[i] for i in head], [p for i, p in enumerate(params) if i not in head]]
    before = [p.detach().clone() for p in params]
    cfg = DPConfig(noise_multiplier=0.0, max_grad_norm=c, sample_rate=0.1, dataset_size=60)
    trainer = DPTrainer(model, torch.optim.SGD(params, lr=1.0), cfg,
                        classification_loss("multi_label"), clip_groups=groups)
    trainer.step({k: v for k, v in batch.items() if k != "lengths"})
    trainer.close()
    for b, p, e in zip(before, params, expected, strict=True):
        assert torch.allclose((b - p.detach()) * cfg.expected_batch_size, e, atol=1e-9)
    other = tiny_bert()
    other_params = [p for _, p in trainable(other)]
    with pytest.raises(BadInput, match="partition"):
        DPTrainer(other, torch.optim.SGD(other_params, lr=1.0), cfg,
                  classification_loss("single_label"), clip_groups=[other_params[:1]])
