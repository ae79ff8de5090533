"""Task diagnostics: the task monitor, await chains, outcomes and their assertions, the
silent-failure detectors and the blocked-loop watchdog, on the test's own loop."""
