"""The flow language: Kestra-compatible models, the strict YAML loader, aliases and JSON Schema.

Typical use::

    from control_plane.flows import FlowValidationError, load_flow_file

    try:
        flow = load_flow_file("flows/hello.yaml")
    except FlowValidationError as exc:
        print(exc)  # "<file>: N violations" then one "file:line:column: path: message" per line
"""

from control_plane.errors import FlowValidationError
from control_plane.flows.aliases import canonical_type
from control_plane.flows.loader import Violation, load_flow_file, parse_flow
from control_plane.flows.models import Flow
from control_plane.flows.schema import flow_json_schema

__all__ = [
    "Flow",
    "FlowValidationError",
    "Violation",
    "canonical_type",
    "flow_json_schema",
    "load_flow_file",
    "parse_flow",
]
