"""Settings for every test tree.

Hypothesis' per-example deadline measures the machine, not the code: on a loaded 2-core
box an example that takes 0.1 ms can take 400 ms, and the test then fails as "flaky".
Speed lives in ``make bench``; here only correctness counts, so no deadline.
"""

from hypothesis import settings

settings.register_profile("vudm", deadline=None)
settings.load_profile("vudm")
