"""Session-wide hooks: the hostile matrix's tally (`tests/hostile/tally.py`). Here, not in
tests/hostile/conftest.py, so that the process printing the summary has them under
pytest-xdist too."""

from tests.hostile.tally import pytest_runtest_logreport, pytest_terminal_summary

__all__ = ["pytest_runtest_logreport", "pytest_terminal_summary"]
