"""Real emulators and wire-protocol fakes that the integration tests start themselves."""
