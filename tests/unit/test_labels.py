"""Labels mapped to each backend's syntax: always valid, deterministic, never merging two originals."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runners.labels import (
    GCP_MAX_LABELS,
    gcp_label_key,
    gcp_label_value,
    gcp_labels,
    k8s_label_key,
    k8s_labels,
)

GCP_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
GCP_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
K8S_NAME = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)$")
K8S_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

texts = st.text(min_size=0, max_size=120)


def test_squalls_own_labels() -> None:
    labels = {"squall.io/flow": "My Flow", "squall.io/attempt": "2", "squall.io/namespace": "company.team"}
    assert gcp_labels(labels) == {
        "squall_io-flow": gcp_label_value("My Flow"),
        "squall_io-attempt": "2",
        "squall_io-namespace": gcp_label_value("company.team"),
    }
    assert (
        gcp_label_value("My Flow").startswith("my_flow-")
        and gcp_label_value("already-fine") == "already-fine"
    )
    assert k8s_labels(labels) == {
        "squall.io/flow": k8s_labels({"x": "My Flow"})["x"],
        "squall.io/attempt": "2",
        "squall.io/namespace": "company.team",  # already valid: kept as it is
    }


@given(texts)
def test_gcp_keys_and_values_are_always_valid(text: str) -> None:
    assert GCP_KEY.match(gcp_label_key(text or "k")), gcp_label_key(text or "k")
    assert GCP_VALUE.match(gcp_label_value(text)), gcp_label_value(text)


@given(texts, texts)
def test_two_different_values_never_map_to_one(a: str, b: str) -> None:
    if a != b:  # (only a 16-bit hash collision could merge two: not in a test's few hundred draws)
        assert gcp_label_value(a) != gcp_label_value(b)
        assert k8s_labels({"k": a}) != k8s_labels({"k": b})


@given(texts)
def test_k8s_keys_and_values_are_always_valid(text: str) -> None:
    key = k8s_label_key(text)
    prefix, _, name = key.rpartition("/")
    assert K8S_NAME.match(name), key
    assert not prefix or (len(prefix) <= 253 and K8S_PREFIX.match(prefix)), key
    value = k8s_labels({"k": text})["k"]
    assert value == "" or K8S_NAME.match(value), value


def test_mappings_are_deterministic_and_keep_what_fits() -> None:
    assert gcp_label_value("x" * 100) == gcp_label_value("x" * 100)
    assert len(gcp_label_value("x" * 100)) == 63
    assert gcp_label_value("x" * 63) == "x" * 63
    assert k8s_label_key("app.kubernetes.io/name") == "app.kubernetes.io/name"


def test_more_labels_than_gcp_allows_is_an_error_not_a_silent_drop() -> None:
    with pytest.raises(ValueError, match="at most 64"):
        gcp_labels({f"k{i}": "v" for i in range(GCP_MAX_LABELS + 1)})
