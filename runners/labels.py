"""A job's labels as each backend accepts them: one deterministic mapping per label syntax.

``JobSpec.labels`` carries Squall's own keys (``squall.io/namespace``, ``squall.io/flow``,
``squall.io/task``, ``squall.io/execution``, ``squall.io/taskrun``, ``squall.io/attempt``) and
the task's own labels, with any characters a flow author used. Backends are stricter, each
in its own way, and reject the whole job for one bad label::

    gcp_labels({"squall.io/flow": "My Flow"})  == {"squall_io-flow": "my_flow-d7eb"}
    k8s_labels({"squall.io/flow": "My Flow"})  == {"squall.io/flow": "My_Flow-d7eb"}

Rules, for every mapping here:

- deterministic: the same labels give the same result in every process (``find`` may select
  jobs by them);
- a value that already fits is kept as it is; one that had to change gets a short hash of
  the original appended, so two different values never map to the same label ("My Flow" and
  "my_flow" stay apart);
- keys are cleaned without a hash (``squall.io/flow`` reads ``squall_io-flow`` on GCP), and
  two keys that would become one are a ValueError naming both, never a silent overwrite;
- lengths are cut to the backend's limit (a cut text gets the hash too).

GCP (Batch, Cloud Run): keys 1-63 characters, starting with a lowercase letter; keys and values
use lowercase letters, digits, ``_`` and ``-`` only (values may be empty); at most 64 labels.
Kubernetes: an optional DNS-subdomain prefix and ``/``, then a name of at most 63 characters of
``[A-Za-z0-9._-]`` starting and ending alphanumeric; values the same, or empty.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping

__all__ = ["GCP_MAX_LABELS", "gcp_labels", "k8s_labels"]

GCP_MAX_LABELS = 64
_GCP_BAD = re.compile(r"[^a-z0-9_-]")
_K8S_BAD = re.compile(r"[^A-Za-z0-9._-]")
_K8S_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LIMIT = 63


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:4]


def _fit(original: str, cleaned: str, limit: int) -> str:
    """``cleaned`` if nothing changed and it fits, else cut and followed by ``-<hash of original>``."""
    if cleaned == original and len(cleaned) <= limit:
        return cleaned
    suffix = f"-{_digest(original)}"
    return cleaned[: limit - len(suffix)] + suffix


def gcp_label_key(key: str) -> str:
    cleaned = _GCP_BAD.sub("_", key.lower().replace("/", "-"))
    if not ("a" <= cleaned[:1] <= "z"):
        cleaned = "l" + cleaned
    return cleaned if len(cleaned) <= _LIMIT else _fit(key, cleaned, _LIMIT)


def gcp_label_value(value: str) -> str:
    return _fit(value, _GCP_BAD.sub("_", value.lower()), _LIMIT)


def gcp_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` as Google Cloud labels; ValueError past GCP's 64 labels (say so, never drop one)."""
    if len(labels) > GCP_MAX_LABELS:
        raise ValueError(f"{len(labels)} labels: Google Cloud accepts at most {GCP_MAX_LABELS} on a resource")
    return _unique({k: gcp_label_key(k) for k in labels}, labels, gcp_label_value, "Google Cloud")


def _unique(
    keys: Mapping[str, str], labels: Mapping[str, str], value: Callable[[str], str], backend: str
) -> dict[str, str]:
    seen: dict[str, str] = {}
    for original, mapped in keys.items():
        if mapped in seen:
            raise ValueError(
                f"labels {seen[mapped]!r} and {original!r} are both {mapped!r} as {backend} labels"
            )
        seen[mapped] = original
    return {mapped: value(str(labels[original])) for mapped, original in seen.items()}


def _k8s_name(text: str, *, hashed: bool = True) -> str:
    cleaned = _K8S_BAD.sub("_", text)
    if cleaned and not (cleaned[0].isascii() and cleaned[0].isalnum()):
        cleaned = "l" + cleaned
    if cleaned and not (cleaned[-1].isascii() and cleaned[-1].isalnum()):
        cleaned += "0"
    if (hashed and cleaned != text) or len(cleaned) > _LIMIT:  # the hash ends in a hex digit
        suffix = f"-{_digest(text)}"
        cleaned = cleaned[: _LIMIT - len(suffix)] + suffix
    return cleaned


def k8s_label_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and len(prefix) <= 253 and _K8S_PREFIX.match(prefix):
        return f"{prefix}/{_k8s_name(name or 'label', hashed=False)}"
    return _k8s_name(key or "label", hashed=False)


def k8s_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` as Kubernetes labels (``metadata.labels``)."""
    return _unique({k: k8s_label_key(k) for k in labels}, labels, _k8s_value, "Kubernetes")


def _k8s_value(value: str) -> str:
    return _k8s_name(value) if value else ""
