"""Checks a runner's doc page against its code: the options table and the sample's snippet.

Every runner page in docs/runners/ has an ``## Options`` table (``| `name` | default | Kestra or
Squall | what |``), in the options model's order, and a ``yaml`` snippet taken from the runner's
sample. These checks keep both true as the model changes::

    check_options_table(DOC, GoogleBatchOptions, options_module, kestra_until="so a Kestra flow")
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic import BaseModel

__all__ = ["check_options_table", "check_snippet", "options_table", "shown_default"]


def _iso(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return "PT" + "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)


def shown_default(field: Any) -> str:
    """A model field's default as the table shows it."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None or value == () or value == {}:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, timedelta):
        return f"`{_iso(value)}`"
    if isinstance(value, BaseModel):
        return f"`{json.dumps(value.model_dump(by_alias=True, exclude_none=True))}`"
    if isinstance(value, tuple):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def options_table(doc: Path) -> dict[str, list[str]]:
    """``{option: [default, origin, what]}`` from the page's ``## Options`` section."""
    text = doc.read_text()
    start = text.index("## Options")
    section = text[start : text.index("\n## ", start + 1)]
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \| (\w+) \| (.*) \|$", section, flags=re.M)
    return {name: [default, origin, what] for name, default, origin, what in rows}


def check_options_table(doc: Path, model: type[BaseModel], module: ModuleType, *, kestra_until: str) -> None:
    """Every option of ``model`` in the table, in order, with its default and origin.

    Kestra's names are the ones the options module's docstring lists after "Kestra has one ("
    and before ``kestra_until``; the others must be marked Squall's, as their descriptions say.
    """
    table = options_table(doc)
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    assert list(table) == list(fields), "the table lists the options in the model's order"
    text = module.__doc__ or ""
    kestra = set(re.findall(r"``(\w+)``", text[text.index("Kestra has one (") : text.index(kestra_until)]))
    assert kestra and kestra <= set(fields)
    for name, field in fields.items():
        default, origin, what = table[name]
        assert default == shown_default(field), name
        assert origin == ("Kestra" if name in kestra else "Squall"), name
        assert not (field.description or "").startswith("Squall extra") or origin == "Squall", name
        assert what.strip(), name


def check_snippet(doc: Path, runner_block: dict[str, Any]) -> None:
    """The page's ``yaml`` snippet is the sample's ``taskRunner`` block (labels may be fewer)."""
    snippet = re.search(r"```yaml\n(.*?)```", doc.read_text(), flags=re.S)
    assert snippet is not None
    shown = yaml.safe_load(snippet.group(1))["taskRunner"]
    assert {k: runner_block[k] for k in shown if k != "labels"} == {
        k: v for k, v in shown.items() if k != "labels"
    }
    assert shown["labels"].items() <= runner_block["labels"].items()


def checkout_entry_points(site: Path) -> Path | None:
    """A directory holding a dist-info with the ``squall.runners`` entry points pyproject.toml
    declares and the installed metadata lacks, or None when nothing is missing.

    The registry reads installed metadata; a checkout installed before a runner was added (an
    editable install made earlier) lacks its entry point until reinstalled. Put the directory on
    ``sys.path`` (or PYTHONPATH) to stand in for that reinstall; a fresh ``pip install -e .``
    needs none.
    """
    import tomllib
    from importlib.metadata import entry_points

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]["squall.runners"]
    installed = {ep.name for ep in entry_points(group="squall.runners")}
    missing = {name: target for name, target in declared.items() if name not in installed}
    if not missing:
        return None
    dist = site / "squall_checkout_runners-0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: squall-checkout-runners\nVersion: 0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in sorted(missing.items()))
    (dist / "entry_points.txt").write_text(f"[squall.runners]\n{lines}")
    return site
