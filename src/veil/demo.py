"""Seeded synthetic chest X-ray reports with PHI surrogates, split across sites.

The corpus is the project's default data: multi-label findings/impression text
over 16 labels (see :mod:`veil.demo_text`), with synthetic PHI (names, dates,
MRNs, phones, hospitals, addresses, ZIP codes, ages, accession numbers) in a
header block and inside sentences, and exact character spans for every PHI
surrogate. All PHI is made up (Faker + random digits); no real person appears.
Records are dealt to sites IID or with Dirichlet label skew (:mod:`veil.splits`).
Everything is a function of ``seed``: the same seed writes the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from veil import demo_text as dtx
from veil.artifacts import atomic_output
from veil.demo_phi import PHI_TYPES, SpanBuilder, Surrogates
from veil.errors import BadInput
from veil.privacy.rng import make_rng
from veil.splits import format_rows, split_sites, write_site_files

CSV_COLUMNS: tuple[str, ...] = ("id", "site", "text", "findings", "impression", "labels",
                                "site_type")
SPLITS = ("iid", "dirichlet")


@dataclass
class DemoReport:
    """One synthetic report; ``phi_spans`` index ``text`` (``text[start:end]``)."""

    id: str
    site: str
    text: str
    findings: str
    impression: str
    labels: list[str]
    phi_spans: list[dict[str, Any]]
    site_type: str
    primary_label: str


@dataclass
class _Site:
    name: str
    site_type: str
    hospital: str
    address: str
    zip: str
    area: str


@dataclass
class DemoSummary:
    """What :func:`write_demo_corpus` wrote, with counts for a summary table."""

    out_dir: Path
    n_reports: int
    split: str
    alpha: float | None
    seed: int
    label_counts: dict[str, int]
    site_counts: dict[str, int]
    site_types: dict[str, str]
    phi_counts: dict[str, int]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def split_desc(self) -> str:
        """The split in words, e.g. ``dirichlet (alpha=0.5)``."""
        return self.split if self.alpha is None else f"{self.split} (alpha={self.alpha:g})"

    def rows(self) -> list[tuple[str, str]]:
        """``(item, value)`` pairs for a two-column rich table."""
        out = [("reports", str(self.n_reports)), ("split", self.split_desc),
               ("seed", str(self.seed))]
        out += [(f"site {s} ({self.site_types[s]})", str(n)) for s, n in self.site_counts.items()]
        out += [(f"label {lab}", str(n)) for lab, n in self.label_counts.items()]
        out += [(f"PHI {t}", str(n)) for t, n in self.phi_counts.items()]
        out += [("folder", str(self.out_dir))]
        return out


def _sites(phi: Surrogates, n_sites: int) -> list[_Site]:
    out = []
    for k in range(n_sites):
        academic = k % 2 == 0
        address, zip_code = phi.address()
        out.append(_Site(f"site_{k}", "academic" if academic else "community",
                         phi.hospital(academic), address, zip_code,
                         str(int(phi.rng.integers(201, 990)))))
    return out


def _render(i: int, case: dtx.Case, site: _Site, others: list[str], phi: Surrogates,
            rng: np.random.Generator) -> DemoReport:
    academic = site.site_type == "academic"
    u = rng.random()
    casing = "upper" if u < (0.04 if academic else 0.12) else "lower" if u > 0.96 else "mixed"
    b = SpanBuilder(casing)
    female = bool(rng.random() < 0.5)
    first, last = phi.person(female)
    exam = dt.date(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 8 * 365)))
    dob = exam - dt.timedelta(days=365 * case.age + int(rng.integers(1, 360)))
    prior = exam - dt.timedelta(days=int(rng.integers(20, 1500)))
    addr, zip_code = phi.address()
    v = {"PATIENT": phi.patient(first, last), "MRN": phi.mrn(), "DATE": phi.date(dob),
         "AGE": str(case.age), "ACCESSION": phi.accession(exam), "DATE2": phi.date(exam),
         "DOCTOR": phi.doctor(), "PHONE": phi.phone(site.area), "HOSPITAL": site.hospital,
         "ADDRESS": site.address, "ZIP": site.zip, "ADDRESS2": addr, "ZIP2": zip_code}
    if academic:
        b.fill("{HOSPITAL}\nDepartment of Radiology, {ADDRESS} {ZIP}\n\n", v)
        b.fill("Patient: {PATIENT}    MRN: {MRN}    DOB: {DATE}    Age: {AGE}\n", v)
        if rng.random() < 0.5:
            b.fill("Address: {ADDRESS2} {ZIP2}\n", v)
        b.fill("Accession: {ACCESSION}    Exam date: {DATE2}\n"
               "Referring physician: Dr. {DOCTOR}    Phone: {PHONE}\n\n", v)
    else:
        b.fill("{HOSPITAL} - Radiology Report\nNAME: {PATIENT}  MRN: {MRN}  DOB: {DATE}\n", v)
        b.fill("ACC#: {ACCESSION}  DOS: {DATE2}  Ordering: Dr. {DOCTOR}\n", v)
    head = ("EXAMINATION: ", "INDICATION: ", "COMPARISON: ", "FINDINGS:\n", "IMPRESSION:\n")
    if not academic:
        head = ("Exam: ", "Indication: ", "Comparison: ", "Findings: ", "Impression: ")
    b.add(head[0] + dtx.exam_name(case, rng) + "\n" + head[1])
    why = dtx.indication(case, rng)
    sex = phi.pick(("woman", "female") if female else ("man", "male"))
    style = int(rng.integers(3))
    ind = {0: why[:1].upper() + why[1:] + ".", 1: "{AGE}-year-old " + f"{sex} with {why}.",
           2: ("Ms. " if female else "Mr. ") + "{PATIENT2} is a {AGE} year old " + f"{sex} "
           f"with {why}."}[style]
    b.fill(ind + "\n" + head[2], {**v, "PATIENT2": last})
    cmp_v = {**v, "DATE": phi.date(prior),
             "HOSPITAL": site.hospital if rng.random() < 0.6 else phi.pick(tuple(others))}
    u = rng.random()
    in_findings = u > 0.7
    if u < 0.3:
        b.add("None.")
    elif in_findings:
        b.add("See findings.")
    else:
        b.fill(phi.pick(("{DATE}.", "Prior study of {DATE} at {HOSPITAL}.",
                         "Prior films from {HOSPITAL} dated {DATE}.")), cmp_v)
    b.add("\n\n" + head[3])
    b.mark("findings")
    if in_findings:
        b.fill(phi.pick(("Compared with the prior study of {DATE} at {HOSPITAL}. ",
                         "Comparison is made to the radiograph from {HOSPITAL} on {DATE}. ")),
               cmp_v)
    b.add(" ".join(dtx.findings_sentences(case, rng, academic=academic)))
    b.mark("findings_end")
    b.add("\n\n" + head[4])
    b.mark("impression")
    items = dtx.impression_items(case, rng)
    if academic and len(items) > 1:
        b.add("\n".join(f"{j}. {s}" for j, s in enumerate(items, 1)))
    else:
        b.add(" ".join(items))
    urgent = bool({"Pneumothorax", "Pneumonia", "Fracture"} & set(case.labels))
    if rng.random() < (0.6 if urgent else 0.15):
        call = {**v, "DATE": phi.date(exam)}
        hhmm = f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"
        b.fill(" " + phi.pick((
            "Findings were discussed with Dr. {DOCTOR} at {PHONE} on {DATE} at " + hhmm + ".",
            "Critical result called to Dr. {DOCTOR} ({PHONE}) at " + hhmm + " on {DATE}.",
            "Results communicated to Dr. {DOCTOR} by telephone, {PHONE}.")), call)
    b.mark("impression_end")
    signer = {"DOCTOR": phi.doctor(), "DATE": phi.date(exam)}
    b.fill(phi.pick(("\n\nElectronically signed by Dr. {DOCTOR} on {DATE}.\n",
                     "\n\nDictated by: {DOCTOR}, MD\n")), signer)
    text, m = b.text(), b.marks
    return DemoReport(f"demo-{i:05d}", site.name, text, text[m["findings"]:m["findings_end"]],
                      text[m["impression"]:m["impression_end"]], list(case.labels), b.spans,
                      site.site_type, dtx.primary_label(case.labels))


def generate_demo_corpus(n_reports: int = 600, n_sites: int = 4, split: str = "dirichlet",
                         alpha: float = 0.5, seed: int = 0) -> list[DemoReport]:
    """Generate the synthetic multi-site radiology corpus in memory.

    Args:
        n_reports: number of reports (>= n_sites).
        n_sites: number of sites; even-numbered sites are academic, odd community.
        split: ``"iid"`` or ``"dirichlet"`` (label skew over the primary label).
        alpha: Dirichlet concentration (> 0); ignored for ``"iid"``.
        seed: every random choice (labels, text, PHI, sites) follows from it.

    Returns:
        Reports in id order. No privacy guarantee applies: the data are synthetic.

    Raises:
        BadInput: invalid sizes, split name or alpha.
    """
    if split not in SPLITS:
        raise BadInput(f"unknown split {split!r}; expected one of {SPLITS}", column="split")
    if n_sites < 1 or n_reports < n_sites:
        raise BadInput(f"need 1 <= n_sites <= n_reports, got {n_sites} sites and "
                       f"{n_reports} reports")
    if split == "dirichlet" and not alpha > 0:
        raise BadInput(f"alpha must be > 0, got {alpha}", column="alpha")
    rng = make_rng(seed)
    cases = [dtx.sample_case(rng) for _ in range(n_reports)]
    assignment = split_sites([dtx.primary_label(c.labels) for c in cases], n_sites,
                             iid=split == "iid", alpha=alpha, rng=rng)
    phi = Surrogates(rng)
    sites = _sites(phi, n_sites)
    others = [phi.hospital(bool(k % 2)) for k in range(6)]
    return [_render(i, c, sites[int(assignment[i])], others, phi, rng)
            for i, c in enumerate(cases)]


_README = """# veil demo corpus (synthetic)

{n} synthetic chest X-ray reports across {k} sites, generated by `veil demo`
(split: {split}, seed {seed}). **All PHI is synthetic**: patient and doctor names,
dates, ages, MRNs, accession and phone numbers, hospitals, addresses and ZIP codes
are made up (Faker and random digits). No real person or record is represented.

Files:
- `reports.jsonl`: id, site, site_type, text, findings, impression, labels,
  primary_label, phi_spans (each `{{start, end, type, text}}` with `text[start:end]`).
- `reports.csv`: {columns}; labels joined by `;`.
- `phi_spans.jsonl`: one line per report: `{{id, phi_spans}}`.
- `sites/site_<k>.csv`: the same columns, one file per site.

Labels ({n_labels}): {labels}.
PHI types: {phi_types}.
Sites: {sites}.
"""


def _guard_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput("output path exists and is not a folder", path=out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "reports.jsonl").exists():
        raise BadInput("output folder is not empty and is not a veil demo corpus; "
                       "refusing to replace it", path=out_dir)


def write_demo_corpus(out_dir: str | Path, *, n_reports: int = 600, n_sites: int = 4,
                      split: str = "dirichlet", alpha: float = 0.5,
                      seed: int = 0) -> DemoSummary:
    """Generate the corpus and write it to ``out_dir`` atomically (all files or none).

    An existing ``out_dir`` is replaced only if it is empty or a previous demo
    corpus. Arguments as in :func:`generate_demo_corpus`.

    Returns:
        A :class:`DemoSummary` with counts and the final file paths.
    """
    out = Path(out_dir).resolve()
    _guard_out_dir(out)
    reports = generate_demo_corpus(n_reports, n_sites, split, alpha, seed)
    rows = [asdict(r) for r in reports]
    site_names = [f"site_{k}" for k in range(n_sites)]
    site_types = {s: ("academic" if k % 2 == 0 else "community")
                  for k, s in enumerate(site_names)}
    label_counts = Counter(lab for r in reports for lab in r.labels)
    site_counts = Counter(r.site for r in reports)
    phi_counts = Counter(s["type"] for r in reports for s in r.phi_spans)
    summary = DemoSummary(
        out, n_reports, split, alpha if split == "dirichlet" else None, seed,
        {lab: label_counts[lab] for lab in dtx.LABELS},
        {s: site_counts[s] for s in site_names}, site_types,
        {t: phi_counts[t] for t in PHI_TYPES})
    readme = _README.format(
        n=n_reports, k=n_sites, seed=seed,
        split=summary.split_desc, columns=", ".join(CSV_COLUMNS),
        n_labels=len(dtx.LABELS), labels=", ".join(dtx.LABELS), phi_types=", ".join(PHI_TYPES),
        sites=", ".join(f"{s} ({site_types[s]}, {site_counts[s]} reports)" for s in site_names))
    with atomic_output(out) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "reports.jsonl").write_text(format_rows(rows, CSV_COLUMNS, "jsonl"), "utf-8")
        (tmp / "reports.csv").write_text(format_rows(rows, CSV_COLUMNS, "csv"), "utf-8")
        (tmp / "phi_spans.jsonl").write_text("".join(
            json.dumps({"id": r.id, "phi_spans": r.phi_spans}, ensure_ascii=False) + "\n"
            for r in reports), "utf-8")
        (tmp / "README.md").write_text(readme, "utf-8")
        assignment = [int(r.site.split("_")[1]) for r in reports]
        write_site_files(rows, assignment, tmp / "sites", "csv", columns=CSV_COLUMNS,
                         n_sites=n_sites)
    summary.files = {"reports_jsonl": out / "reports.jsonl", "reports_csv": out / "reports.csv",
                     "phi_spans": out / "phi_spans.jsonl", "readme": out / "README.md",
                     **{f"site_{k}": out / "sites" / f"site_{k}.csv" for k in range(n_sites)}}
    return summary
