"""Suite-wide settings. Hypothesis profiles: `dev` (default), `ci` (CI=true), `long`.

Pick one with `--hypothesis-profile=long` (or HYPOTHESIS_PROFILE=long). The profiles govern every
test: none fixes its own max_examples; one whose examples are expensive runs a share of the
profile's (support_hypothesis.expensive), so `long` lengthens it too. Helpers and fixtures of one
area live in that area's own module (tests/support_*.py), not here.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("long", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
