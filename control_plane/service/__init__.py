"""The imperative shell around the pure engine: applies actions, talks to stores and runners."""
