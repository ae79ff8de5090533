"""The pytest plugin (the ``pytest11`` entry point ``asyncfaults``): hooks and fixtures.

The only package of pytest-asyncfaults that imports pytest. pytest reads the
hooks and fixtures off this module, so each is re-exported here by name; the
work is done in the modules beside it.
"""

from __future__ import annotations

from ._hooks import app_client as app_client
from ._hooks import asgi_app as asgi_app
from ._hooks import asyncfaults_backend as asyncfaults_backend
from ._hooks import asyncfaults_env as asyncfaults_env
from ._hooks import asyncfaults_settings as asyncfaults_settings
from ._hooks import chaos_scenario as chaos_scenario
from ._hooks import faults as faults
from ._hooks import postgres_server as postgres_server
from ._hooks import pytest_addoption as pytest_addoption
from ._hooks import pytest_configure as pytest_configure
from ._hooks import pytest_report_header as pytest_report_header
from ._hooks import pytest_runtest_call as pytest_runtest_call
from ._hooks import pytest_runtest_setup as pytest_runtest_setup
from ._hooks import pytest_unconfigure as pytest_unconfigure
from ._hooks import smtp_server as smtp_server
from ._hooks import tasks as tasks
