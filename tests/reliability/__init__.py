"""Reliability campaigns: what a crash of the local runtime loses, measured (docs/reliability.md)."""
