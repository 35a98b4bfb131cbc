"""``--explain report.html``: each document's tokens coloured by group, original beside released.

This file shows the ORIGINAL text (PHI included); it is written only on explicit request
and should be handled like the input data. It carries no extra privacy guarantee.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

from veil.artifacts import atomic_write_text
from veil.privatize.groups import GROUP_LABELS
from veil.privatize.stats import TokenTrace
from veil.privatize.vocab import Vocabulary

MAX_DOCS = 200  # the page stays small enough for a browser

_COLORS = ("#f4a3a3", "#f7c873", "#9fd89f", "#d6e4f0", "#dddddd", "#ffffff")
_NAMES = ("G1 sensitive + important", "G2 sensitive + unimportant",
          "G3 not sensitive + important", "G4 not sensitive + unimportant",
          "kept (already masked)", "layout")
_STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;width:100%}
td{vertical-align:top;border:1px solid #ccc;padding:.5em;white-space:pre-wrap;width:50%;
font-family:monospace;font-size:13px}span.t{border-radius:3px}span.c{outline:1px solid #555}
.legend span{padding:2px 6px;margin-right:6px}h2{font-size:1em;margin-top:2em}"""


def _fmt_eps(x: float) -> str:
    if math.isnan(x):
        return "copied"
    return "∞" if math.isinf(x) else f"{x:g}"


def _side(text: str, trace: TokenTrace, pieces: list[str] | None) -> str:
    """One column: the text with every token wrapped in a coloured span."""
    parts: list[str] = []
    cursor = 0
    for t, (s, e) in enumerate(trace.offsets.tolist()):
        if s < cursor:
            continue
        parts.append(html.escape(text[cursor:s]))
        g = int(trace.groups[t])
        body = text[s:e] if pieces is None else pieces[t]
        changed = pieces is not None and trace.out_ids[t] != trace.ids[t]
        title = f"{GROUP_LABELS[g]} ε={_fmt_eps(float(trace.eps[t]))}"
        parts.append(f'<span class="t{" c" if changed else ""}" style="background:{_COLORS[g]}"'
                     f' title="{html.escape(title)}">{html.escape(body)}</span>')
        cursor = e
    parts.append(html.escape(text[cursor:]))
    return "".join(parts)


def _released_pieces(vocab: Vocabulary, text: str, trace: TokenTrace) -> list[str]:
    out = []
    for (s, e), oid, keep in zip(trace.offsets.tolist(), trace.out_ids.tolist(),
                                 trace.keep.tolist(), strict=True):
        if keep:
            out.append(text[s:e])
        elif oid < 0:
            out.append(vocab.mask_text)
        else:
            piece = vocab.surfaces[oid]
            out.append(piece[1:] if vocab.offsets_trim_space and piece[:1] == " " else piece)
    return out


def write_explain(path: str | Path, ids: Sequence[str], originals: Sequence[str],
                  traces: Sequence[TokenTrace], vocab: Vocabulary,
                  group_eps: Sequence[float]) -> int:
    """Write the HTML page (atomically) for the first :data:`MAX_DOCS` documents.

    Returns:
        The number of documents shown.
    """
    legend = "".join(f'<span style="background:{_COLORS[g]}">{html.escape(_NAMES[g])}'
                     f'{f" (ε={_fmt_eps(group_eps[g])})" if g < 4 else ""}</span>'
                     for g in range(len(_NAMES) - 1))
    body = []
    shown = min(len(originals), MAX_DOCS)
    for k in range(shown):
        tr, text = traces[k], originals[k]
        body.append(f"<h2>{html.escape(str(ids[k]))}</h2><table><tr><th>original</th>"
                    f"<th>released</th></tr><tr><td>{_side(text, tr, None)}</td>"
                    f"<td>{_side(text, tr, _released_pieces(vocab, text, tr))}</td></tr></table>")
    note = (f"<p>Showing {shown} of {len(originals)} documents.</p>"
            if shown < len(originals) else "")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>veil privatize: explain"
            f"</title><style>{_STYLE}</style></head><body><h1>veil privatize — explain</h1>"
            "<p><b>Contains the original text (PHI).</b> Outlined tokens changed. Hover a token "
            f"for its group and ε.</p><p class='legend'>{legend}</p>{note}{''.join(body)}"
            "</body></html>")
    atomic_write_text(path, page)
    return shown
