"""PHI surrogates for the demo corpus, and exact span bookkeeping.

:class:`Surrogates` draws made-up names, dates, phone numbers (555 exchange),
MRNs, accession numbers, hospitals and addresses from a seeded Faker instance
and a numpy Generator. :class:`SpanBuilder` concatenates text segments and
records each PHI segment's ``(start, end, type, text)`` on the final text,
after any case change, so ``text[start:end] == span["text"]`` always holds.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np

PHI_TYPES: tuple[str, ...] = ("PATIENT", "DOCTOR", "DATE", "AGE", "MRN", "ACCESSION", "PHONE",
                              "HOSPITAL", "ADDRESS", "ZIP")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_FIELD = re.compile(r"\{([A-Z]+)\d?\}")


class SpanBuilder:
    """Concatenates text segments, recording PHI spans on the final (cased) text."""

    def __init__(self, casing: str) -> None:
        self.casing = casing
        self.parts: list[str] = []
        self.spans: list[dict[str, Any]] = []
        self.marks: dict[str, int] = {}
        self.pos = 0

    def add(self, text: str, phi: str | None = None) -> None:
        """Append ``text`` (cased); if ``phi`` names a type, record it as a span."""
        if self.casing == "upper":
            text = text.upper()
        elif self.casing == "lower":
            text = text.lower()
        if phi is not None:
            self.spans.append({"start": self.pos, "end": self.pos + len(text), "type": phi,
                               "text": text})
        self.parts.append(text)
        self.pos += len(text)

    def fill(self, template: str, values: dict[str, str]) -> None:
        """Add ``template``; ``{TYPE}``/``{TYPE2}`` fields become PHI spans of TYPE."""
        last = 0
        for m in _FIELD.finditer(template):
            self.add(template[last:m.start()])
            self.add(values[m.group(0)[1:-1]], m.group(1))
            last = m.end()
        self.add(template[last:])

    def mark(self, name: str) -> None:
        """Remember the current offset under ``name`` (section boundaries)."""
        self.marks[name] = self.pos

    def text(self) -> str:
        """The text built so far."""
        return "".join(self.parts)


class Surrogates:
    """Surrogate PHI values drawn from a seeded Faker instance and a numpy Generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        from faker import Faker

        self.rng = rng
        self.fake = Faker("en_US")
        self.fake.seed_instance(int(rng.integers(2**31)))

    def pick(self, options: tuple[str, ...]) -> str:
        """One of ``options``, uniformly."""
        return options[int(self.rng.integers(len(options)))]

    def digits(self, n: int) -> str:
        """``n`` random decimal digits."""
        return "".join(str(d) for d in self.rng.integers(0, 10, size=n))

    def person(self, female: bool) -> tuple[str, str]:
        """A made-up ``(first, last)`` name."""
        first = self.fake.first_name_female() if female else self.fake.first_name_male()
        return first, self.fake.last_name()

    def patient(self, first: str, last: str) -> str:
        """A patient name in one of three header styles."""
        style = int(self.rng.integers(3))
        if style == 0:
            return f"{first} {last}"
        if style == 1:
            return f"{last.upper()}, {first.upper()}"
        return f"{first} {self.pick(tuple('ABCDEFGHJKLMNPRSTW'))}. {last}"

    def doctor(self) -> str:
        """A made-up clinician name (the span excludes the ``Dr.`` title)."""
        first, last = self.person(bool(self.rng.random() < 0.5))
        return f"{first[0]}. {last}" if self.rng.random() < 0.2 else f"{first} {last}"

    def date(self, d: dt.date) -> str:
        """``d`` in one of five common US formats."""
        style = int(self.rng.choice(5, p=[0.5, 0.15, 0.15, 0.1, 0.1]))
        if style == 0:
            return f"{d.month:02d}/{d.day:02d}/{d.year}"
        if style == 1:
            return d.isoformat()
        if style == 2:
            return f"{_MONTHS[d.month - 1]} {d.day}, {d.year}"
        if style == 3:
            return f"{d.day:02d}-{_MONTHS[d.month - 1][:3]}-{d.year}"
        return f"{d.month}/{d.day}/{d.year % 100:02d}"

    def phone(self, area: str) -> str:
        """A fictional 555-exchange number in ``area``."""
        line = self.digits(4)
        return self.pick((f"({area}) 555-{line}", f"{area}-555-{line}", f"{area}.555.{line}"))

    def mrn(self) -> str:
        """A medical record number (6-8 digits, optional prefix)."""
        return self.pick(("", "", "A", "00")) + self.digits(int(self.rng.integers(6, 9)))

    def accession(self, d: dt.date) -> str:
        """An exam accession number in one of three styles."""
        return self.pick((f"RAD{d.year % 100:02d}-{self.digits(6)}", f"ACC{self.digits(8)}",
                          f"{d.year}{self.digits(7)}"))

    def address(self) -> tuple[str, str]:
        """``(street, city, state)`` and a ZIP code, as two surrogates."""
        street = self.fake.street_address()
        return f"{street}, {self.fake.city()}, {self.fake.state_abbr()}", self.fake.zipcode()

    def hospital(self, academic: bool) -> str:
        """A made-up hospital name typical of the site type."""
        if academic:
            return self.pick((f"University of {self.fake.state()} Medical Center",
                              f"{self.fake.last_name()} University Hospital",
                              f"St. {self.fake.first_name()} Academic Medical Center"))
        return self.pick((f"{self.fake.city()} Community Hospital",
                          f"{self.fake.last_name()} Memorial Hospital",
                          f"{self.fake.city()} Regional Medical Center"))
