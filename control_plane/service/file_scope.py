"""Which stored files an execution's FILE inputs may name.

A FILE input is normally an upload, stored under the new execution's own prefix. It may also
be given as text: a ``kestra:///`` (or backend) URI. Whoever may start an execution could then
name any file of the deployment, another namespace's outputs among them, and the execution's
tasks would read it with the control plane's credentials. Kestra refuses such reads ("Unable
to read the file ... as it didn't belong to the current execution"): a file must belong to
the execution or to the one that started it (a Subflow's parent, a Flow trigger's upstream).

Squall checks this once, when the execution is created, with the same rule: a URI under the
storage root must lie under

* the new execution's own prefix (the API's uploads for it),
* the calling execution's prefix (Subflow, ForEachItem), or the triggering one's (Flow
  trigger: ``trigger.executionId``),
* the execution it replays (``original_id``), whose uploads a replay keeps,
* the flow's namespace files (``_files/<namespace>/``);

or a prefix of the deployment's read allowlist (``SQUALL_STORAGE_READ``: an operator's choice,
inside the root or not). Any other URI is refused, as an unreadable one is. Values from the
flow's own ``defaults`` are the flow author's and are not checked
(:func:`control_plane.flows.inputs.resolve_inputs`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from control_plane.service.namespace_files import namespace_file_uri
from control_plane.service.storage import StorageError, TaskStorage, is_uri

__all__ = ["file_scope"]


def file_scope(
    storage: TaskStorage,
    *,
    namespace: str,
    flow_id: str,
    execution_id: str,
    parent: Mapping[str, Any] | None = None,
    trigger: Mapping[str, Any] | None = None,
    original_id: str | None = None,
) -> Callable[[str], str | None]:
    """A check for one FILE input value: None when the execution may read it, else the reason."""
    owners = [(namespace, flow_id, execution_id)]
    if original_id is not None:
        owners.append((namespace, flow_id, original_id))
    for link, key in ((parent, "id"), (trigger, "executionId")):
        if link and all(isinstance(link.get(k), str) for k in ("namespace", "flowId", key)):
            owners.append((link["namespace"], link["flowId"], link[key]))
    root = storage.url
    allowed = [storage.execution_prefix(ns, flow, ex) for ns, flow, ex in owners]
    allowed.append(namespace_file_uri(storage, namespace, [], directory=True))
    allowed.extend(storage.storage.read_allowlist)

    def check(value: str) -> str | None:
        if not is_uri(value):
            return None  # text, not a file reference: nothing is read on its behalf
        try:
            canonical = storage.canonical(value.strip())
        except StorageError as exc:
            return str(exc)
        if not canonical.startswith(root) or any(canonical.startswith(prefix) for prefix in allowed):
            return None
        return (
            f"the file `{value.strip()}` does not belong to this execution: a FILE input names an upload,"
            " a file of the execution that started this one, or a file of the namespace"
        )

    return check
