"""The pytest plugin (the ``pytest11`` entry point ``asyncfaults``): hooks and fixtures.

The only package of pytest-asyncfaults that imports pytest. pytest reads the
hooks and fixtures off this module, so each is re-exported here by name; the
work is done in the modules beside it.
"""

from __future__ import annotations

from ._fixtures import app_client as app_client
from ._fixtures import asgi_app as asgi_app
from ._fixtures import asyncfaults_backend as asyncfaults_backend
from ._fixtures import asyncfaults_env as asyncfaults_env
from ._fixtures import asyncfaults_settings as asyncfaults_settings
from ._fixtures import chaos_scenario as chaos_scenario
from ._fixtures import faults as faults
from ._fixtures import postgres_server as postgres_server
from ._fixtures import smtp_server as smtp_server
from ._fixtures import tasks as tasks
from ._hooks import pytest_configure as pytest_configure
from ._hooks import pytest_configure_node as pytest_configure_node
from ._hooks import pytest_fixture_setup as pytest_fixture_setup
from ._hooks import pytest_report_header as pytest_report_header
from ._hooks import pytest_runtest_call as pytest_runtest_call
from ._hooks import pytest_runtest_makereport as pytest_runtest_makereport
from ._hooks import pytest_runtest_setup as pytest_runtest_setup
from ._hooks import pytest_runtest_teardown as pytest_runtest_teardown
from ._hooks import pytest_sessionfinish as pytest_sessionfinish
from ._hooks import pytest_timeout_set_timer as pytest_timeout_set_timer
from ._hooks import pytest_unconfigure as pytest_unconfigure
from ._options import pytest_addoption as pytest_addoption
