"""metrics.json of a real paper run against its JSON Schema (flows/cryoreg/analysis/).

Its fixed keys are a public interface: readers rely on them, so a run's file must validate, and
the schema must reject a file that lost a fixed key or changed a value's type.
"""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from cryoreg.analysis.metrics import metrics_schema

pytestmark = pytest.mark.xdist_group("paper")


@pytest.fixture(scope="module")
def validator():
    schema = metrics_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture(scope="module")
def metrics(paper_site):
    return json.loads((paper_site.base / "out" / "metrics.json").read_text())


def _errors(validator, document) -> list[str]:
    return [
        "/".join(map(str, e.absolute_path)) + ": " + e.message
        for e in validator.iter_errors(document)
    ]


def test_a_real_runs_metrics_match_the_schema(validator, metrics):
    assert _errors(validator, metrics) == []


def _without(document: dict, path: tuple) -> dict:
    changed = copy.deepcopy(document)
    node = changed
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return changed


def _with(document: dict, path: tuple, value) -> dict:
    changed = copy.deepcopy(document)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


FIXED = [
    ("schema_version",),
    ("cohort",),
    ("cohort", "women"),
    ("cohort", "diameter_cm", "median"),
    ("technical_success", "all"),
    ("technique_efficacy", "p_chi2"),
    ("technique_efficacy", "ge4cm", "ci95"),
    ("local_tumor_progression", "expected_cell_below_5"),
    ("adverse_events", "major_lt4cm", "k"),
    ("ltp_free_survival", "logrank_p"),
    ("ltp_free_survival", "all", "at_years", "5"),
    ("ltp_free_survival", "lt4cm", "median_years"),
    ("cox", "covariates"),
    ("cox_clustered", "clusters"),
    ("overall_survival", "median_follow_up_years"),
    ("ltp_cumulative_incidence", "ge4cm", "at_years", "3", "death_cif"),
    ("run",),
    ("run", "extracts", 0, "content_hash"),
    ("run", "files", 0, "quarantined"),
    ("run", "data_quality", "status"),
]


@pytest.mark.parametrize("path", FIXED, ids=["/".join(map(str, p)) for p in FIXED])
def test_a_missing_fixed_key_is_rejected(validator, metrics, path):
    assert _errors(validator, _without(metrics, path))


WRONG_TYPES = [
    (("schema_version",), "1"),
    (("cohort", "patients"), 186.5),
    (("technique_efficacy", "all", "k"), "231"),
    (("technique_efficacy", "all", "ci95"), [0.8]),
    (("adverse_events", "p_fisher"), "0.052"),
    (("local_tumor_progression", "expected_cell_below_5"), "yes"),
    (("ltp_free_survival", "all", "at_years", "1", "survival"), "0.9"),
    (("cox", "fitted"), 1),
    (("cox", "covariates", "diameter_cm", "hr"), "1.5"),
    (("overall_survival", "n"), None),
    (("run", "files", 0, "read"), "299"),
    (("run", "finished_at"), "yesterday"),
]


@pytest.mark.parametrize(
    "path,value", WRONG_TYPES, ids=["/".join(map(str, p)) for p, _ in WRONG_TYPES]
)
def test_a_wrong_type_is_rejected(validator, metrics, path, value):
    assert _errors(validator, _with(metrics, path, value))
