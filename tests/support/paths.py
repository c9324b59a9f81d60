"""Folders of the checkout the tests read: the repository root, tests/, experiments/, configs/."""

import os

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
EXPERIMENTS = os.path.join(ROOT, "experiments")
# The test configuration as a file (``--config configs/test.py``; the packaged name is "test").
TEST_CONFIG = os.path.join(ROOT, "configs", "test.py")
