"""The token vocabulary STAMP perturbs over: embedding table, piece kinds, tokenising, rendering.

A :class:`Vocabulary` holds the embedding table ``E`` ([V, d] float32) of a model, its
row-normalised copy ``Ê`` (the polar mechanism works on the unit sphere), and for every
id its *kind* as an output candidate: word-initial (0), continuation (1, e.g. WordPiece
``##ing`` or a byte-level BPE piece without a leading space) or excluded (-1: special,
``[unused*]``, zero, whitespace-only or partial-UTF-8 tokens). It tokenises documents in
full (character windows cut at whitespace, never truncated) with character offsets, and
renders released ids back into the original layout: each token's character span is
replaced by the released piece, text between tokens (whitespace, newlines) is copied.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

INITIAL, CONTINUATION, EXCLUDED = 0, 1, -1
_WINDOW_CHARS = 50_000  # longer documents are tokenised in windows cut at whitespace
_UNUSED = re.compile(r"^\[unused\d+\]$|^<\|reserved_special_token_\d+\|>$")

IntArray = npt.NDArray[np.int64]


@dataclass
class Encoded:
    """One tokenised document: token ids and ``[start, end)`` character offsets."""

    ids: IntArray
    offsets: IntArray  # (n, 2)


@dataclass(eq=False)
class Vocabulary:
    """An embedding vocabulary with piece kinds and surface strings.

    Attributes:
        name: registry name or folder of the embedding model.
        table: raw embeddings E, float32 [V, d].
        kinds: int8 [V]: 0 word-initial, 1 continuation, -1 never output.
        surfaces: the text written into a document when id ``i`` is released.
        mask_text: the text written for a masked (ε = 0) token.
        tokenizer: the Hugging Face fast tokenizer (None for synthetic test vocabularies).
        offsets_trim_space: byte-level BPE offsets exclude the leading space of a piece.
        layout_ids: ids that are pure whitespace (layout, kept as in the input).
    """

    name: str
    table: npt.NDArray[np.float32]
    kinds: npt.NDArray[np.int8]
    surfaces: list[str]
    mask_text: str = "[MASK]"
    tokenizer: Any = None
    offsets_trim_space: bool = False
    layout_ids: npt.NDArray[np.bool_] | None = None
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.table = np.ascontiguousarray(self.table, dtype=np.float32)
        norms = np.linalg.norm(self.table.astype(np.float64), axis=1)
        self.norms = norms
        safe = np.where(norms > 0, norms, 1.0)
        self.unit = np.ascontiguousarray(self.table / safe[:, None].astype(np.float32))
        self.kinds = np.asarray(self.kinds, dtype=np.int8).copy()
        self.kinds[norms == 0] = EXCLUDED
        if self.layout_ids is None:
            self.layout_ids = np.zeros(len(self.kinds), dtype=bool)

    @property
    def size(self) -> int:
        """Number of ids V."""
        return int(self.table.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return int(self.table.shape[1])

    @functools.cached_property
    def l1_diameter(self) -> float:
        """Δ₁ = Σ_j (max_v E[v, j] − min_v E[v, j]) over output candidates (Laplace scale Δ₁/ε)."""
        rows = self.table[self.kinds >= 0].astype(np.float64)
        return float((rows.max(axis=0) - rows.min(axis=0)).sum())

    def candidates(self, kind: int | None) -> IntArray:
        """Output ids of one kind (``None``: every non-excluded id), ascending."""
        mask = self.kinds >= 0 if kind is None else self.kinds == kind
        return np.flatnonzero(mask).astype(np.int64)

    def input_kinds(self, ids: IntArray) -> npt.NDArray[np.int8]:
        """The kind an input token decodes to: its own kind; excluded inputs (``[UNK]``) count
        as word-initial."""
        k = self.kinds[ids]
        return np.where(k == CONTINUATION, CONTINUATION, INITIAL).astype(np.int8)

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        """Tokenise every document in full with character offsets (no special tokens)."""
        if self.tokenizer is None:
            raise RuntimeError("this vocabulary has no tokenizer")
        pieces: list[tuple[int, int, int]] = []  # (doc, window start, window end)
        for k, text in enumerate(texts):
            pieces.extend((k, a, b) for a, b in _windows(text))
        batch = [texts[k][a:b] for k, a, b in pieces]
        enc = self.tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True,
                             return_attention_mask=False, return_token_type_ids=False,
                             verbose=False) if batch else {"input_ids": [], "offset_mapping": []}
        ids_per: list[list[IntArray]] = [[] for _ in texts]
        off_per: list[list[IntArray]] = [[] for _ in texts]
        for (k, a, _), ids, offs in zip(pieces, enc["input_ids"], enc["offset_mapping"],
                                        strict=True):
            ids_per[k].append(np.asarray(ids, dtype=np.int64))
            off_per[k].append(np.asarray(offs, dtype=np.int64).reshape(-1, 2) + a)
        return [Encoded(np.concatenate(i) if i else np.zeros(0, np.int64),
                        np.concatenate(o) if o else np.zeros((0, 2), np.int64))
                for i, o in zip(ids_per, off_per, strict=True)]

    def render(self, text: str, offsets: IntArray, out_ids: IntArray,
               keep: npt.NDArray[np.bool_]) -> str:
        """Rebuild a document: kept tokens copy their original characters, released ones
        write ``surfaces[id]`` (``mask_text`` for id -1); text between tokens is copied."""
        parts: list[str] = []
        cursor = 0
        surf, trim = self.surfaces, self.offsets_trim_space
        for (s, e), oid, kp in zip(offsets.tolist(), out_ids.tolist(), keep.tolist(),
                                   strict=True):
            overlap = s < cursor  # several tokens share characters (byte pieces of one char)
            if not overlap:
                parts.append(text[cursor:s])
            if kp:
                if not overlap:
                    parts.append(text[s:e])
            elif oid < 0:
                parts.append(self.mask_text)
            else:
                piece = surf[oid]
                parts.append(piece[1:] if trim and piece[:1] == " " else piece)
            cursor = max(cursor, e)
        parts.append(text[cursor:])
        return "".join(parts)


def _windows(text: str) -> list[tuple[int, int]]:
    """Character windows of at most ~``_WINDOW_CHARS``, each starting at a whitespace run's
    last character so that no word (and no leading-space piece) is split."""
    n = len(text)
    if n <= _WINDOW_CHARS:
        return [(0, n)] if n else []
    out, start = [], 0
    while n - start > _WINDOW_CHARS:
        cut = start + _WINDOW_CHARS
        while cut > start + _WINDOW_CHARS // 2 and not (
                text[cut].isspace() and not text[cut + 1: cut + 2].isspace()):
            cut -= 1
        if cut <= start + _WINDOW_CHARS // 2:  # no whitespace: one very long word
            cut = start + _WINDOW_CHARS
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


def _is_wordpiece(tokenizer: Any) -> bool:
    """Whether the fast tokenizer's model is WordPiece (``##`` continuation pieces)."""
    import json

    model = json.loads(tokenizer.backend_tokenizer.to_str()).get("model", {})
    return bool(model.get("type") == "WordPiece")


def _kinds_and_surfaces(tokenizer: Any) -> tuple[np.ndarray, list[str], bool, np.ndarray]:
    vocab_size = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    special = set(tokenizer.all_special_ids)
    wordpiece = _is_wordpiece(tokenizer)
    kinds = np.zeros(vocab_size, dtype=np.int8)
    surfaces = [""] * vocab_size
    layout = np.zeros(vocab_size, dtype=bool)
    for i, tok in enumerate(tokens):
        if tok is None or i in special or _UNUSED.match(tok):
            kinds[i] = EXCLUDED
            continue
        if wordpiece:
            cont = tok.startswith("##")
            surf = tok[2:] if cont else tok
        else:
            surf = tokenizer.convert_tokens_to_string([tok])
            cont = not surf[:1].isspace()
        surfaces[i] = surf
        if not surf.strip() or "\ufffd" in surf:
            kinds[i] = EXCLUDED
            layout[i] = not surf.strip() and bool(surf)
            continue
        kinds[i] = CONTINUATION if cont else INITIAL
    trim = False
    if not wordpiece:
        enc = tokenizer(" a b", add_special_tokens=False, return_offsets_mapping=True)
        trim = bool(enc["offset_mapping"]) and enc["offset_mapping"][-1][0] == 3
    return kinds, surfaces, trim, layout


@functools.lru_cache(maxsize=4)
def load_vocabulary(name: str) -> Vocabulary:
    """Load (once per process) the embedding table and tokenizer of ``name``.

    Args:
        name: ``minilm``, ``smollm2-135m`` or a local Hugging Face model folder.

    Raises:
        BadInput: unknown model or a tokenizer without character offsets (not "fast").
    """
    from veil.errors import BadInput
    from veil.models import embedding_table

    table, tokenizer = embedding_table(name)
    if not getattr(tokenizer, "is_fast", False):
        raise BadInput(f"embedding model {name}: needs a fast tokenizer (character offsets)")
    kinds, surfaces, trim, layout = _kinds_and_surfaces(tokenizer)
    v = min(len(kinds), table.shape[0])  # tokenizers may define fewer ids than table rows
    kinds_full = np.full(table.shape[0], EXCLUDED, dtype=np.int8)
    kinds_full[:v] = kinds[:v]
    surf_full = (surfaces + [""] * table.shape[0])[: table.shape[0]]
    layout_full = np.zeros(table.shape[0], dtype=bool)
    layout_full[:v] = layout[:v]
    mask = tokenizer.mask_token if getattr(tokenizer, "mask_token", None) else "***"
    return Vocabulary(name=name, table=table, kinds=kinds_full, surfaces=surf_full,
                      mask_text=mask, tokenizer=tokenizer, offsets_trim_space=trim,
                      layout_ids=layout_full)
