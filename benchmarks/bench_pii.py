"""PHI detection throughput (``veil.privatize.sensitivity.PhiDetector``), measured in one run.

Corpora: 2,000 seeded demo reports (synthetic PHI) and, when ../shared/datasets is
present, 2,000 IU chest X-ray reports (indication + comparison + findings + impression).
Models and dictionaries are loaded first (the cold load is timed separately).

For each corpus: documents/s and tokens/s (spaCy tokens; whitespace words in brackets)
for batched detection (``nlp.pipe`` batches of 64) with and without spaCy NER, and for
one-by-one calls (``detect([text])`` per document, on the first 400 documents); the
batched / one-by-one ratio. Wall-clock and process CPU time are both reported, since
the machine may be shared; the target uses CPU time on one core.

Target (issue: privatize end to end >= 3,000 tokens/s on 2 cores, so detection well
above): batched detection with NER >= 8,000 spaCy tokens/s of CPU time. PASS/FAIL is
printed; the exit code is 0 either way.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TARGET_TOKENS_PER_CPU_S = 8000
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def corpora(n: int) -> list[tuple[str, list[str]]]:
    """The benchmark corpora: demo reports, and IU X-ray reports when available."""
    from veil.demo import generate_demo_corpus

    out = [(f"demo ({n})", [r.text for r in generate_demo_corpus(n, 4, seed=0)])]
    iu = SHARED / "iu_xray_reports.csv"
    if iu.exists():
        with open(iu, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))[:n]
        out.append((f"IU X-ray ({len(rows)})", [
            "\n".join(r[k] for k in ("indication", "comparison", "findings", "impression")
                      if r[k]) for r in rows]))
    return out


def bench(name: str, texts: Sequence[str], n_single: int) -> bool:
    """Print one corpus's figures; return whether the batched NER run meets the target."""
    from veil.privatize.sensitivity import PhiConfig, PhiDetector

    full = PhiDetector(PhiConfig(batch_size=64)).load()
    fast = PhiDetector(PhiConfig(batch_size=64, use_ner=False)).load()
    nlp = full._analyzer.nlp_engine.nlp["en"]
    tokens = sum(len(nlp.make_doc(t)) for t in texts)
    words = sum(len(re.findall(r"\S+", t)) for t in texts)
    full.detect(list(texts[:20]))  # warm caches
    wall, cpu = _timed(lambda: full.detect(texts))
    nwall, ncpu = _timed(lambda: fast.detect(texts))
    single = texts[:n_single]
    tok_single = sum(len(nlp.make_doc(t)) for t in single)
    swall, scpu = _timed(lambda: [full.detect([t]) for t in single])
    bwall, _ = _timed(lambda: full.detect(single))
    print(f"\n{name}: {len(texts)} documents, {tokens} spaCy tokens ({words} words)")
    print("| mode | docs/s (wall) | tokens/s (wall) | tokens/s (CPU) |")
    print("|---|---|---|---|")
    for label, w, c, n, tk in (("batched, NER", wall, cpu, len(texts), tokens),
                               ("batched, no NER", nwall, ncpu, len(texts), tokens),
                               ("one by one, NER", swall, scpu, len(single), tok_single)):
        print(f"| {label} | {n / w:,.0f} | {tk / w:,.0f} | {tk / c:,.0f} |")
    print(f"batched / one-by-one speed ratio (first {len(single)} docs, wall): "
          f"{swall / bwall:.2f}x")
    ok = tokens / cpu >= TARGET_TOKENS_PER_CPU_S
    print(f"target >= {TARGET_TOKENS_PER_CPU_S:,} tokens per CPU-second (batched, NER): "
          f"{'PASS' if ok else 'FAIL'} ({tokens / cpu:,.0f})")
    return ok


def main() -> None:
    """Run the benchmark and print Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--single", type=int, default=400)
    args = parser.parse_args()
    from veil.privatize.sensitivity import PhiDetector

    wall, cpu = _timed(lambda: PhiDetector().load())
    print(f"cold load (spaCy model, Presidio, dictionaries): {wall:.1f} s wall, {cpu:.1f} s CPU")
    for name, texts in corpora(args.docs):
        bench(name, texts, args.single)


if __name__ == "__main__":
    main()
