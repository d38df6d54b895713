"""Plain helpers shared by tests, imported as `from tests.helpers.<module> import ...`.

Fixtures stay in conftest files; no test module imports from another test module or from a conftest.
"""
