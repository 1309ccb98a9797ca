"""Test-wide settings.

One torch intra-op thread per test process: CI has 2 shared cores and runs two pytest-xdist
workers; more threads than cores were measured many times slower for these tiny models. Set before
any test module imports torch (the env var is read when torch initializes its thread pool).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
