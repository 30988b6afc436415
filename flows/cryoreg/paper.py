"""The published figures of Glazer et al. (AJR 2017), in one place.

`cryoreg synth --profile paper` calibrates its cohort to them, the report prints them beside
each night's values, and the tests compare a run on the paper registry with them. Counts are
exact; means, medians and percentages are as printed (one decimal).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Proportion:
    """k of n, as the paper's table gives it."""

    k: int
    n: int

    @property
    def pct(self) -> float:
        return round(100 * self.k / self.n, 1)

    def __str__(self) -> str:
        return f"{self.k}/{self.n} ({self.pct:.1f}%)"


# Cohort (the paper's Results, first paragraphs)
PATIENTS = 186
WOMEN = 95
AGE_MEAN, AGE_MIN, AGE_MAX = 60.9, 29, 88
PROCEDURES = 236
GUIDANCE = {"CT": 126, "MRI": 100, "PET/CT": 10}
TUMORS = 299
METASTASES, PRIMARY = 243, 56
DIAMETER_CM_MEAN, DIAMETER_CM_MEDIAN, DIAMETER_CM_MIN, DIAMETER_CM_MAX = 2.5, 2.2, 0.3, 7.8
FOLLOW_UP_YEARS_MEAN, FOLLOW_UP_MONTHS_MIN, FOLLOW_UP_YEARS_MAX = 2.5, 2, 14.6

# Outcomes (tumors for TS, TE and LTP; procedures for adverse events), by size group
TECHNICAL_SUCCESS = Proportion(279, 295)
TECHNIQUE_EFFICACY = {
    "all": Proportion(231, 258),
    "lt4cm": Proportion(213, 228),
    "ge4cm": Proportion(18, 30),
}
LOCAL_TUMOR_PROGRESSION = {
    "all": Proportion(60, 258),
    "lt4cm": Proportion(41, 228),
    "ge4cm": Proportion(19, 30),
}
ADVERSE_EVENTS = Proportion(80, 236)
MAJOR_ADVERSE_EVENTS = {
    "all": Proportion(25, 236),
    "lt4cm": Proportion(17, 195),
    "ge4cm": Proportion(8, 41),
}

# p-values as printed: size groups compared by chi-square
TECHNIQUE_EFFICACY_P = "< 0.0001"
LOCAL_TUMOR_PROGRESSION_P = "< 0.0001"
MAJOR_ADVERSE_EVENTS_P = 0.04

# Where the printed paper and its own counts disagree, or another test gives another answer
NOTES = {
    "ae_any": "the paper prints 33.8%; 80/236 is 33.9%",
    "ae_p": "Fisher exact: 0.052",
}
