"""The flow language: Kestra-compatible models, the strict YAML loader, aliases and JSON Schema."""
