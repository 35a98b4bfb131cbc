"""The classifier: a pretrained encoder, mean pooling, a linear head; LoRA on top layers.

all-MiniLM-L6-v2 is a sentence-transformers model: its native sentence
representation is the mean of its token states, and its BERT pooler was never
trained for this checkpoint. So veil does not use ``BertForSequenceClassification``
(CLS + untrained pooler) but :class:`EncoderClassifier`: mean pooling (or the CLS
state) followed by one ``nn.Linear`` head named ``classifier``.

Speed without changing the result: when only the top ``k`` layers carry LoRA
adapters (``--lora-layers k``) or only the head is trained (``--adapter head``),
the frozen layers below are a fixed function of each record. Their output
(:meth:`EncoderClassifier.prefix`) is computed once, without dropout, and
training runs only the top layers on it. The per-record gradients, their
clipping and hence the privacy guarantee are exactly those of running the whole
model (the cached states are per record; nothing is shared across records).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.modeling_outputs import SequenceClassifierOutput

from veil.errors import BadInput
from veil.train.config import DEFAULT_HEAD_INIT_SCALE

PREFIX_MODEL_TYPES = ("bert",)


class EncoderClassifier(nn.Module):
    """Encoder -> pooling -> per-example standardisation -> dropout -> linear head.

    The pooled vector is standardised per example (a layer norm without learned
    parameters: a fixed function of each record alone). Mean-pooled MiniLM
    states have a per-coordinate spread of about 0.09; standardised ones let the
    head learn at ordinary learning rates, and give per-record gradients whose
    norms sit near the clipping norm, where DP-SGD wastes least signal.

    Args:
        encoder: a transformers ``AutoModel`` (BERT-like for prefix caching).
        num_labels: outputs of the head.
        pooling: "mean" or "cls".
        start_layer: first layer run on cached prefix states (0: no cache).
        prior: initial bias of every output (e.g. ``logit(1/L)`` for multi-label: a
            data-independent guess that each label is rare).
    """

    def __init__(self, encoder: Any, num_labels: int, pooling: str = "mean",
                 start_layer: int = 0, prior: float = 0.0) -> None:
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused (and untrained in sentence-transformers checkpoints)
        self.encoder: Any = encoder
        self.config: Any = encoder.config
        self.pooling = pooling
        self.start_layer = start_layer
        self.dropout = nn.Dropout(float(getattr(encoder.config, "hidden_dropout_prob", 0.1)))
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        with torch.no_grad():
            self.classifier.bias.fill_(prior)

    def _layers(self) -> Any:
        return self.encoder.encoder.layer

    def _mask4d(self, states: Tensor, attention_mask: Tensor) -> Any:
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.config, inputs_embeds=states,
                                         attention_mask=attention_mask)

    @torch.no_grad()
    def prefix(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Output of the embeddings and the first ``start_layer`` layers (no dropout)."""
        was = self.training
        self.eval()
        try:
            b, t = input_ids.shape
            pos = torch.arange(t, device=input_ids.device).expand(b, t)
            h = self.encoder.embeddings(input_ids=input_ids, position_ids=pos,
                                        token_type_ids=torch.zeros_like(input_ids))
            mask = self._mask4d(h, attention_mask)
            for layer in self._layers()[: self.start_layer]:
                h = layer(h, mask)
            return h
        finally:
            self.train(was)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        prefix_states: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        """Logits from token ids (whole encoder) or from cached ``prefix_states``."""
        assert attention_mask is not None
        if prefix_states is not None:
            h = prefix_states
            layers = self._layers()[self.start_layer:]
            if len(layers):
                mask = self._mask4d(h, attention_mask)
                for layer in layers:
                    h = layer(h, mask)
        else:
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids,
                             position_ids=position_ids).last_hidden_state
        pooled = pool_states(h, attention_mask, self.pooling)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))


def pool_states(states: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """The classifier's document vector: mean over real tokens (or the CLS state), standardised."""
    if pooling == "cls":
        pooled = states[:, 0]
    else:
        m = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)
    return F.layer_norm(pooled, pooled.shape[-1:])


def core(model: nn.Module) -> EncoderClassifier:
    """The :class:`EncoderClassifier` inside a PEFT wrapper (or the model itself)."""
    inner: Any = model
    for _ in range(3):
        if isinstance(inner, EncoderClassifier):
            return inner
        inner = inner.base_model.model if hasattr(inner, "base_model") else inner
    raise TypeError("not an EncoderClassifier")


def lora_module_names(encoder: Any, start: int, targets: tuple[str, ...]) -> list[str]:
    """Full names (inside an :class:`EncoderClassifier`) of the Linear layers to adapt.

    A target matches a Linear module of layer ``>= start`` whose name equals it
    or ends with ``"." + target`` (``query`` matches ``attention.self.query``).
    """
    out = []
    layers = encoder.encoder.layer
    for i in range(start, len(layers)):
        for name, module in layers[i].named_modules():
            if type(module) is nn.Linear and any(
                    name == t or name.endswith("." + t) for t in targets):
                out.append(f"encoder.encoder.layer.{i}.{name}")
    if not out:
        raise BadInput(f"--lora-targets {','.join(targets)} matched no linear layer of the model")
    return out


def build_classifier(
    model_name: str,
    num_labels: int,
    *,
    adapter: str = "lora",
    multi_label: bool = True,
    pooling: str = "mean",
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_targets: tuple[str, ...] = ("query", "value"),
    lora_layers: int | None = None,
    lora_freeze_a: bool = False,
    seed: int = 0,
    head_init: str = "random",
    head_init_scale: float = DEFAULT_HEAD_INIT_SCALE,
    label_names: Sequence[str] = (),
    descriptions: Mapping[str, Sequence[str]] | None = None,
) -> nn.Module:
    """A fresh classifier with only the chosen weights trainable (via the engine's ``add_lora``).

    The head is initialised from ``seed`` (``head_init="random"``) or from the
    embeddings of the label descriptions (``"labels"``, see :mod:`veil.train.head_init`;
    ``descriptions`` default to the zero-shot teacher's templates over ``label_names``).
    ``start_layer`` is set so that every frozen layer below the first adapted one can
    be cached (BERT-like encoders). ``lora_freeze_a`` keeps every ``lora_A`` at its
    seeded random start (FFA-LoRA): only ``lora_B`` and the head train.
    """
    from veil.models import load_encoder
    from veil.privacy.dpsgd import add_lora

    encoder = load_encoder(model_name, seed=seed)
    n_layers = int(encoder.config.num_hidden_layers)
    cacheable = getattr(encoder.config, "model_type", "") in PREFIX_MODEL_TYPES
    if adapter == "head":
        start = n_layers
    elif adapter == "full" or lora_layers is None or lora_layers >= n_layers:
        start = 0
    else:
        start = n_layers - lora_layers
    task = "multi_label" if multi_label else "single_label"
    prior = -math.log(num_labels - 1) if multi_label and num_labels > 1 else 0.0
    with torch.random.fork_rng(devices=[]):  # head and LoRA-A initialisation follow the seed
        torch.manual_seed(seed)
        model: nn.Module = EncoderClassifier(encoder, num_labels, pooling,
                                             start if cacheable else 0, prior)
        if head_init == "labels":
            _init_head_from_labels(model, model_name, label_names, descriptions,
                                   head_init_scale)
        if adapter == "lora":
            targets = lora_module_names(encoder, start, lora_targets)
            model = add_lora(model, r=lora_r, alpha=lora_alpha, targets=targets,
                             task=task)  # type: ignore[arg-type]
            if lora_freeze_a:
                freeze_lora_a(model)
        else:
            model = add_lora(model, adapter=adapter, task=task)  # type: ignore[arg-type]
    return model


def freeze_lora_a(model: nn.Module) -> int:
    """Stop training every LoRA ``A`` matrix (left at its seeded start); returns how many."""
    frozen = 0
    for name, param in model.named_parameters():
        if ".lora_A." in name and param.requires_grad:
            param.requires_grad_(False)
            frozen += 1
    if frozen == 0:
        raise ValueError("no trainable lora_A weight to freeze")
    return frozen


def _init_head_from_labels(model: nn.Module, model_name: str, label_names: Sequence[str],
                           descriptions: Mapping[str, Sequence[str]] | None,
                           scale: float) -> None:
    from veil.models import load_tokenizer
    from veil.train.head_init import description_embeddings, label_head_weight
    from veil.train.teacher import default_descriptions

    inner = core(model)
    if len(label_names) != inner.classifier.out_features:
        raise ValueError("head_init='labels' needs one name per output")
    descs: dict[str, Sequence[str]] = dict(default_descriptions(label_names))
    descs.update(descriptions or {})
    emb = description_embeddings(inner.encoder, load_tokenizer(model_name), descs, label_names,
                               inner.pooling)
    with torch.no_grad():
        inner.classifier.weight.copy_(label_head_weight(emb, scale))


def pad(windows: list[list[int]]) -> dict[str, Tensor]:
    """Right-padded ``input_ids`` / ``attention_mask`` / per-example position and type ids."""
    t = max(len(w) for w in windows)
    ids = torch.zeros(len(windows), t, dtype=torch.long)
    mask = torch.zeros(len(windows), t, dtype=torch.long)
    for i, w in enumerate(windows):
        ids[i, : len(w)] = torch.tensor(w)
        mask[i, : len(w)] = 1
    pos = torch.arange(t).expand(len(windows), t).clone()
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos,
            "token_type_ids": torch.zeros_like(ids)}


def compute_prefix(model: nn.Module, windows: list[list[int]], batch_size: int = 64,
                   progress: str | None = None) -> list[Tensor]:
    """Cached prefix states, one ``(len, hidden)`` tensor per window (sorted batching)."""
    from veil.progress import track

    inner = core(model)
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    out: list[Tensor | None] = [None] * len(windows)
    starts = list(range(0, len(order), batch_size))
    it: Iterator[int] = iter(starts) if progress is None else track(starts, progress)
    for s in it:
        chunk = order[s:s + batch_size]
        batch = pad([windows[i] for i in chunk])
        h = inner.prefix(batch["input_ids"], batch["attention_mask"])
        for j, i in enumerate(chunk):
            out[i] = h[j, : len(windows[i])].clone()
    return [x for x in out if x is not None]


def pad_states(states: list[Tensor]) -> dict[str, Tensor]:
    """Right-padded ``prefix_states`` and ``attention_mask`` for a batch of cached windows."""
    t = max(s.shape[0] for s in states)
    h = states[0].new_zeros(len(states), t, states[0].shape[1])
    mask = torch.zeros(len(states), t, dtype=torch.long)
    for i, s in enumerate(states):
        h[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    return {"prefix_states": h, "attention_mask": mask}


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no gradients for the block; restores the previous mode."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was)
