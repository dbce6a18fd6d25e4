"""The daemon fixtures, shared with the server tests."""

from tests.server.conftest import store_of  # noqa: F401
