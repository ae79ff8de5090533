"""No report of the plugin's carries a password: the terminal's, JUnit's, xdist's.

A DSN reaches a test's report by many doors: an assertion that prints the
app's settings, the app's own log line, an exception's message. Every report
goes through ``mask_report`` before pytest prints or writes it, so the
password of the run's PostgreSQL cluster, of a server the user named, and of
every URL, is shown as ``***``.
"""

from __future__ import annotations

import pytest

from .._address import has_secrets, mask_secrets


def mask_report(report: pytest.TestReport) -> None:
    if report.longrepr is not None:
        text = report.longreprtext
        if has_secrets(text):
            report.longrepr = mask_secrets(text)
    if any(has_secrets(content) for _, content in report.sections):
        report.sections = [(title, mask_secrets(content)) for title, content in report.sections]
    if any(isinstance(value, str) and has_secrets(value) for _, value in report.user_properties):
        report.user_properties = [
            (name, mask_secrets(value) if isinstance(value, str) else value)
            for name, value in report.user_properties
        ]
