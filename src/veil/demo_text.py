"""Clinical content of the demo corpus: labels, a latent case model, phrase banks.

Labels come from a small latent model: each report draws a patient type
(normal, heart failure, infection, ICU, chronic lung disease, trauma), which
sets per-label probabilities; incidental findings are added independently.
This gives realistic co-occurrence (edema with cardiomegaly and effusion,
pneumonia with consolidation). Text is built from varied templates: positive
mentions, negations of absent findings (not labels) and hedged mentions that
occur both with and without the label (inherent ambiguity, as in real reports).
No PHI here; :mod:`veil.demo` adds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LABELS: tuple[str, ...] = (
    "Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Atelectasis", "Consolidation",
    "Pneumonia", "Edema", "Lung Nodule", "Lung Opacity", "Emphysema", "Fracture",
    "Calcified Granuloma", "Hiatal Hernia", "Scoliosis", "Support Devices", "No Finding",
)
# Primary label (for site splits): the first present label in this order.
PRIORITY: tuple[str, ...] = (
    "Pneumothorax", "Pneumonia", "Edema", "Fracture", "Lung Nodule", "Emphysema",
    "Consolidation", "Cardiomegaly", "Pleural Effusion", "Atelectasis", "Lung Opacity",
    "Hiatal Hernia", "Calcified Granuloma", "Scoliosis", "Support Devices", "No Finding",
)
# kind -> (prior weight, label probabilities, severity weights for mild/moderate/severe)
PATIENT_TYPES: dict[str, tuple[float, dict[str, float], tuple[float, float, float]]] = {
    "normal": (0.30, {}, (1.0, 0.0, 0.0)),
    "heart failure": (0.14, {"Cardiomegaly": 0.85, "Edema": 0.70, "Pleural Effusion": 0.60,
                             "Support Devices": 0.25, "Atelectasis": 0.20}, (0.4, 0.4, 0.2)),
    "infection": (0.16, {"Pneumonia": 0.75, "Consolidation": 0.60, "Lung Opacity": 0.50,
                         "Pleural Effusion": 0.25, "Atelectasis": 0.20}, (0.5, 0.35, 0.15)),
    "icu": (0.12, {"Support Devices": 0.90, "Atelectasis": 0.50, "Pleural Effusion": 0.40,
                   "Edema": 0.30, "Lung Opacity": 0.30, "Cardiomegaly": 0.30,
                   "Pneumothorax": 0.25}, (0.2, 0.4, 0.4)),
    "chronic": (0.16, {"Emphysema": 0.60, "Calcified Granuloma": 0.40, "Lung Nodule": 0.35,
                       "Scoliosis": 0.30, "Hiatal Hernia": 0.25, "Lung Opacity": 0.15},
                (0.5, 0.4, 0.1)),
    "trauma": (0.12, {"Fracture": 0.75, "Pneumothorax": 0.35, "Lung Opacity": 0.25,
                      "Atelectasis": 0.20, "Pleural Effusion": 0.15}, (0.3, 0.4, 0.3)),
}
INCIDENTAL: dict[str, float] = {
    "Calcified Granuloma": 0.05, "Scoliosis": 0.04, "Hiatal Hernia": 0.03, "Lung Nodule": 0.03,
    "Cardiomegaly": 0.04, "Atelectasis": 0.05,
}
AGE_RANGE: dict[str, tuple[int, int]] = {
    "normal": (19, 80), "heart failure": (55, 95), "infection": (20, 92), "icu": (30, 90),
    "chronic": (50, 92), "trauma": (18, 85),
}
INDICATIONS: dict[str, tuple[str, ...]] = {
    "normal": ("pre-operative evaluation", "chest pain", "routine screening",
               "a positive PPD", "cough"),
    "heart failure": ("shortness of breath", "dyspnea and leg swelling", "CHF exacerbation",
                      "orthopnea", "chest pain"),
    "infection": ("fever and cough", "productive cough", "fever", "suspected pneumonia",
                  "shortness of breath"),
    "icu": ("new central line placement", "respiratory failure, intubated",
            "post-operative evaluation", "hypoxia", "tube position check"),
    "chronic": ("chronic cough", "COPD follow-up", "dyspnea on exertion", "a known lung nodule",
                "weight loss"),
    "trauma": ("a fall", "a motor vehicle collision", "chest wall pain after a fall",
               "rib pain", "chest trauma"),
}
LUNG_LABELS = frozenset({"Lung Opacity", "Consolidation", "Pneumonia", "Atelectasis", "Edema",
                         "Lung Nodule"})
REGIONS: tuple[tuple[str, ...], ...] = (
    ("Support Devices",),
    ("Lung Opacity", "Consolidation", "Pneumonia", "Atelectasis", "Edema", "Lung Nodule",
     "Calcified Granuloma", "Emphysema"),
    ("Pleural Effusion", "Pneumothorax"),
    ("Cardiomegaly", "Hiatal Hernia"),
    ("Fracture", "Scoliosis"),
)

# label -> (findings positives, negations, hedged mentions, impression positives)
BANK: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "Cardiomegaly": (
        ("The heart is {sevly} enlarged.", "{sev} cardiomegaly.", "Cardiac silhouette is enlarged.",
         "Enlarged cardiac silhouette.", "The cardiomediastinal silhouette is enlarged."),
        ("Heart size is normal.", "The cardiac silhouette is within normal limits.",
         "Normal heart size.", "No cardiomegaly.", "Cardiomediastinal silhouette is unremarkable."),
        ("Heart size is borderline.", "Borderline enlargement of the cardiac silhouette."),
        ("Cardiomegaly.", "{sev} cardiomegaly.", "Enlarged heart."),
    ),
    "Pleural Effusion": (
        ("{size} {side} pleural effusion.", "There is a {size} {side} pleural effusion.",
         "Blunting of the {side} costophrenic angle consistent with a {size} effusion.",
         "{side} pleural fluid is present."),
        ("No pleural effusion.", "No effusion.", "The costophrenic angles are sharp.",
         "No pleural fluid."),
        ("Blunting of the {side} costophrenic angle, effusion versus pleural thickening.",
         "Possible trace {side} effusion."),
        ("{size} {side} pleural effusion.", "{side} effusion."),
    ),
    "Pneumothorax": (
        ("{size} {side} apical pneumothorax.", "There is a {size} {side} pneumothorax.",
         "{side} pneumothorax measuring about {cm} cm.",
         "Visceral pleural line at the {side} apex consistent with pneumothorax."),
        ("No pneumothorax.", "No evidence of pneumothorax.", "There is no pneumothorax."),
        ("Questionable tiny {side} apical pneumothorax.",),
        ("{side} pneumothorax.", "{size} {side} pneumothorax."),
    ),
    "Atelectasis": (
        ("{side} basilar atelectasis.", "Linear opacity at the {side} base compatible with "
         "subsegmental atelectasis.", "Plate-like atelectasis in the {lobe}.",
         "Volume loss in the {lobe} consistent with atelectasis."),
        ("No atelectasis.", "Lung volumes are normal."),
        ("Streaky {side} basilar opacity, atelectasis versus scarring.",),
        ("{side} basilar atelectasis.", "Atelectasis in the {lobe}."),
    ),
    "Consolidation": (
        ("Focal consolidation in the {lobe}.", "Dense airspace consolidation in the {lobe}.",
         "Consolidation of the {lobe} with air bronchograms."),
        ("No focal consolidation.", "No focal airspace consolidation."),
        ("Ill-defined opacity in the {lobe}; early consolidation is not excluded.",),
        ("{lobe} consolidation.", "Consolidation in the {lobe}."),
    ),
    "Pneumonia": (
        ("Airspace disease in the {lobe}, compatible with pneumonia.",
         "Findings consistent with {lobe} pneumonia.", "Patchy infiltrate suspicious for "
         "pneumonia in the {lobe}."),
        ("No radiographic evidence of pneumonia.", "No findings to suggest pneumonia."),
        ("Cannot exclude early pneumonia.", "Infection cannot be excluded."),
        ("{lobe} pneumonia.", "Findings compatible with pneumonia.", "Multifocal pneumonia."),
    ),
    "Edema": (
        ("{sev} pulmonary edema.", "Pulmonary vascular congestion with interstitial edema.",
         "Cephalization and Kerley B lines consistent with interstitial edema.",
         "Bilateral perihilar haziness consistent with pulmonary edema."),
        ("No pulmonary edema.", "No vascular congestion.", "Pulmonary vasculature is normal."),
        ("Possible mild interstitial edema.", "Mild vascular prominence."),
        ("{sev} pulmonary edema.", "Pulmonary edema.", "Interstitial edema."),
    ),
    "Lung Nodule": (
        ("{mm} mm nodule in the {lobe}.", "A {mm} mm pulmonary nodule projects over the {lobe}.",
         "Rounded nodular opacity in the {lobe} measuring {mm} mm."),
        ("No suspicious pulmonary nodules.", "No nodules or masses."),
        ("Possible nodular density in the {lobe}, possibly a nipple shadow.",),
        ("{mm} mm {lobe} nodule; recommend CT for further evaluation.", "Pulmonary nodule."),
    ),
    "Lung Opacity": (
        ("Patchy opacity in the {lobe}.", "Hazy opacity at the {side} base.",
         "Increased interstitial markings in the {lobe}.", "Streaky opacities in the {lobe}."),
        ("No focal opacity.", "No focal airspace opacity."),
        ("Faint opacity in the {lobe}, possibly overlapping soft tissue.",),
        ("Patchy {lobe} opacity.", "{lobe} opacity."),
    ),
    "Emphysema": (
        ("The lungs are hyperinflated with flattened diaphragms consistent with emphysema.",
         "Hyperexpanded lungs compatible with COPD.", "Emphysematous changes with upper lobe "
         "bullae."),
        (),
        ("Lungs are mildly hyperexpanded.",),
        ("Emphysema.", "Changes of COPD."),
    ),
    "Fracture": (
        ("Acute fracture of the {side} {rib} rib.", "Displaced fractures of the {side} {rib} "
         "and {rib2} ribs.", "Healing fracture of the {side} clavicle.",
         "Compression deformity of a mid thoracic vertebral body."),
        ("No acute osseous abnormality.", "No displaced rib fracture.",
         "Bony structures are intact."),
        ("Questionable cortical irregularity of the {side} {rib} rib.",),
        ("{side} rib fractures.", "Fracture as described."),
    ),
    "Calcified Granuloma": (
        ("Calcified granuloma in the {lobe}.", "Small calcified nodule in the {lobe} compatible "
         "with old granulomatous disease.", "Scattered calcified granulomas."),
        (), (), ("Calcified granuloma.", "Old granulomatous disease."),
    ),
    "Hiatal Hernia": (
        ("Retrocardiac air-fluid level consistent with hiatal hernia.", "{sev} hiatal hernia.",
         "A hiatal hernia is noted."),
        (), ("Retrocardiac lucency may represent a small hiatal hernia.",), ("Hiatal hernia.",),
    ),
    "Scoliosis": (
        ("{sev} dextroscoliosis of the thoracic spine.", "{sev} levoscoliosis of the "
         "thoracolumbar spine.", "Scoliosis of the thoracic spine."),
        (), ("Slight curvature of the thoracic spine, possibly positional.",),
        ("Thoracic scoliosis.",),
    ),
    "Support Devices": (
        ("Endotracheal tube terminates {cm} cm above the carina.", "Right internal jugular "
         "central venous catheter with tip in the SVC.", "Enteric tube courses below the "
         "diaphragm.", "Left chest wall pacemaker with leads in the right heart.",
         "Left PICC line with tip at the cavoatrial junction."),
        (), (), ("Lines and tubes as above.", "Support devices in appropriate position."),
    ),
}
NORMAL_IMPRESSIONS = ("No acute cardiopulmonary abnormality.", "Normal chest radiograph.",
                      "No acute disease.", "No acute cardiopulmonary process.")
HEDGED_IMPRESSIONS = ("Possible {x}.", "{x} cannot be excluded.",
                      "Questionable {x}; clinical correlation recommended.")
P_HEDGE_PRESENT = 0.15
LUNGS_CLEAR = ("The lungs are clear.", "Lungs are clear bilaterally.",
               "The lungs are well expanded and clear.")
MINOR = frozenset({"Calcified Granuloma", "Hiatal Hernia", "Scoliosis"})
SEV = ("mild", "moderate", "severe")
SEVLY = ("mildly", "moderately", "markedly")
SIZES = ("small", "moderate", "large")
SIDES = ("right", "left", "bilateral")
LOBES = ("right lower lobe", "left lower lobe", "right upper lobe", "left upper lobe",
         "right middle lobe", "lingula")
RIBS = ("third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


@dataclass
class Case:
    """The clinical content of one report (before text and PHI)."""

    kind: str
    labels: list[str]
    severity: int
    age: int
    slots: dict[str, dict[str, str]] = field(default_factory=dict)
    hedged: set[str] = field(default_factory=set)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _sentence(template: str, slots: dict[str, str]) -> str:
    text = template.format(**slots)
    return text[:1].upper() + text[1:]


def sample_case(rng: np.random.Generator) -> Case:
    """Draw a patient type, its labels (LABELS order), a severity and an age."""
    kinds = list(PATIENT_TYPES)
    weights = np.array([PATIENT_TYPES[k][0] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    _, probs, sev_w = PATIENT_TYPES[kind]
    present = {lab for lab, p in probs.items() if rng.random() < p}
    present |= {lab for lab, p in INCIDENTAL.items() if rng.random() < p}
    labels = [lab for lab in LABELS if lab in present] or ["No Finding"]
    severity = int(rng.choice(3, p=np.asarray(sev_w)))
    lo, hi = AGE_RANGE[kind]
    case = Case(kind, labels, severity, int(rng.integers(lo, hi + 1)))
    for lab in LABELS[:-1]:  # hedged mention: uncertain both with and without the label
        if BANK[lab][2]:
            p = P_HEDGE_PRESENT if lab in present else 0.02 + 0.08 * (lab in probs)
            if rng.random() < p:
                case.hedged.add(lab)
    for lab in LABELS:
        size_i = int(np.clip(severity + rng.integers(-1, 2), 0, 2))
        rib = int(rng.integers(len(RIBS) - 1))
        case.slots[lab] = {
            "sev": SEV[size_i], "sevly": SEVLY[size_i], "size": SIZES[size_i],
            "side": _pick(rng, SIDES), "lobe": _pick(rng, LOBES),
            "mm": str(int(rng.integers(4, 26))), "cm": str(int(rng.integers(1, 6))),
            "rib": RIBS[rib], "rib2": RIBS[rib + 1],
        }
    return case


def primary_label(labels: list[str]) -> str:
    """The most clinically important label present (PRIORITY order)."""
    return next(lab for lab in PRIORITY if lab in labels)


def indication(case: Case, rng: np.random.Generator) -> str:
    """A reason for the exam, usually matching the patient type (70 %)."""
    kind = case.kind if rng.random() < 0.7 else _pick(rng, tuple(INDICATIONS))
    return _pick(rng, INDICATIONS[kind])


def exam_name(case: Case, rng: np.random.Generator) -> str:
    """The exam line: portable for ICU patients, PA/lateral otherwise (mostly)."""
    portable = rng.random() < (0.8 if case.kind == "icu" else 0.2)
    if portable:
        return _pick(rng, ("Portable AP chest radiograph.", "Chest, single portable view."))
    return _pick(rng, ("Chest radiograph, PA and lateral views.", "Chest, 2 views.",
                       "XR chest PA and lateral."))


def findings_sentences(case: Case, rng: np.random.Generator, *, academic: bool) -> list[str]:
    """Findings, region by region: positives, negations of absent findings, hedges."""
    present = set(case.labels)
    p_neg = 0.65 if academic else 0.4
    out: list[str] = []
    for region in REGIONS:
        sentences: list[str] = []
        absent = [lab for lab in region if lab not in present]
        negated: set[str] = set()
        if "Pleural Effusion" in absent and "Pneumothorax" in absent and rng.random() < 0.5:
            sentences.append(_pick(rng, ("No pleural effusion or pneumothorax.",
                                         "No effusion or pneumothorax.")))
            negated |= {"Pleural Effusion", "Pneumothorax"}
        if region is REGIONS[1] and not present & LUNG_LABELS and rng.random() < 0.7:
            sentences.append(_pick(rng, LUNGS_CLEAR))
            negated |= LUNG_LABELS
        for lab in region:
            pos, neg, hedge, _ = BANK[lab]
            slots = case.slots[lab]
            if lab in case.hedged:
                sentences.append(_sentence(_pick(rng, hedge), slots))
            elif lab in present:
                sentences.append(_sentence(_pick(rng, pos), slots))
            elif neg and lab not in negated and rng.random() < p_neg:
                sentences.append(_pick(rng, neg))
        order = rng.permutation(len(sentences))
        out.extend(sentences[i] for i in order)
    return out


def impression_items(case: Case, rng: np.random.Generator) -> list[str]:
    """Impression statements: salient positives (minor ones sometimes omitted)."""
    present = [lab for lab in PRIORITY
               if lab in case.labels and lab != "No Finding" and lab not in case.hedged]
    items: list[str] = []
    if {"Cardiomegaly", "Edema"} <= set(present) and rng.random() < 0.5:
        items.append(_pick(rng, ("Findings consistent with congestive heart failure.",
                                 "Cardiomegaly with pulmonary edema, compatible with CHF.")))
        present = [lab for lab in present if lab not in ("Cardiomegaly", "Edema")]
    for lab in present:
        if lab in MINOR and rng.random() < 0.5:
            continue
        items.append(_sentence(_pick(rng, BANK[lab][3]), case.slots[lab]))
    for lab in PRIORITY:
        if lab in case.hedged and rng.random() < 0.5:
            items.append(_sentence(_pick(rng, HEDGED_IMPRESSIONS), {"x": lab.lower()}))
    if not items:
        items.append(_pick(rng, NORMAL_IMPRESSIONS))
    return items
