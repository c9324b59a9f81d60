"""Plain helpers shared by the tests (imported as ``from support import ...``)."""
