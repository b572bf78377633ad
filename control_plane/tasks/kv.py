"""``io.kestra.plugin.core.kv``: Set, Get, Delete, GetKeys over :class:`KvStore`.

Properties, defaults, outputs and error messages are Kestra's (kv/Set.java, Get.java,
Delete.java, GetKeys.java; InternalKVStore.java): the namespace defaults to the flow's,
``Get`` and ``Delete`` succeed on a missing key unless ``errorOnMissing``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from control_plane.flows.durations import parse_timedelta
from control_plane.service.kv import KvStore, kv_type
from control_plane.tasks import TaskFailure

if TYPE_CHECKING:
    from control_plane.tasks import EffectContext, Handler

__all__ = ["HANDLERS"]


def _store(ctx: EffectContext) -> KvStore:
    return KvStore(ctx.storage, ctx.now)


def _namespace(props: Mapping[str, Any], ctx: EffectContext) -> str:
    return str(props.get("namespace") or ctx.namespace)


def _key(props: Mapping[str, Any]) -> str:
    key = props.get("key")
    if not isinstance(key, str) or not key:
        raise TaskFailure("property 'key' must be a non-empty text")
    return key


def _typed(value: Any, kind: str | None) -> tuple[str, Any]:
    """Kestra's Set: a text value is converted to ``kvType`` when given (Set.java's switch)."""
    if kind is None or not isinstance(value, str):
        return (kind or kv_type(value)), value
    try:
        match kind:
            case "NUMBER":
                number = json.loads(value)
                if isinstance(number, bool) or not isinstance(number, int | float):
                    raise ValueError(f"{value!r} is not a number")
                return kind, number
            case "BOOLEAN":
                return kind, value.strip().lower() == "true"  # Boolean.parseBoolean
            case "DATETIME" | "DATE":
                if not value.endswith("Z") and "+" not in value[10:]:
                    raise ValueError(f"{value!r} is not an instant (e.g. 2024-01-01T00:00:00Z)")
                datetime.fromisoformat(value)
                return kind, value
            case "DURATION":
                parse_timedelta(value)
                return kind, value
            case "JSON":
                return kind, json.loads(value)
            case _:
                return kind, value
    except ValueError as exc:
        raise TaskFailure(f"property 'value' cannot be read as kvType {kind}: {exc}") from None


def _ttl(value: Any) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    try:
        return parse_timedelta(str(value))
    except ValueError as exc:
        raise TaskFailure(f"property 'ttl': {exc}") from None


def kv_set(props: Mapping[str, Any], ctx: EffectContext) -> None:
    kind, value = _typed(props.get("value"), props.get("kvType"))
    overwrite = props.get("overwrite", True)
    _store(ctx).put(
        _namespace(props, ctx),
        _key(props),
        kind,
        value,
        overwrite=bool(overwrite),
        ttl=_ttl(props.get("ttl")),
    )
    return None


def _missing(key: str, namespace: str) -> TaskFailure:
    return TaskFailure(
        f"No value found for key '{key}' in namespace '{namespace}' and `errorOnMissing` is set to true"
    )


def kv_get(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    namespace, key = _namespace(props, ctx), _key(props)
    try:
        value = _store(ctx).get(namespace, key)
    except KeyError:
        if props.get("errorOnMissing"):
            raise _missing(key, namespace) from None
        value = None
    return {"value": value}


def kv_delete(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    namespace, key = _namespace(props, ctx), _key(props)
    deleted = _store(ctx).delete(namespace, key)
    if props.get("errorOnMissing") and not deleted:
        raise _missing(key, namespace)
    return {"deleted": deleted}


def kv_get_keys(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    prefix = props.get("prefix")
    keys = _store(ctx).keys(_namespace(props, ctx))
    return {"keys": sorted(k for k in keys if prefix is None or k.startswith(str(prefix)))}


HANDLERS: dict[str, Handler] = {
    "squall.kv.Set": kv_set,
    "squall.kv.Get": kv_get,
    "squall.kv.Delete": kv_delete,
    "squall.kv.GetKeys": kv_get_keys,
}
