"""Contract suites: each runs the same assertions against every implementation of an interface."""
