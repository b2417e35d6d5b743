"""Helpers shared by the tests: child processes and servers, fakes, markers, real test data.

Imported as a package (`from tests.support.processes import ServerProcess`), never through
sys.path; fixtures that use them live in the conftest.py of the folder that needs them.
"""
