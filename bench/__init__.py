# Reproducible benchmarks of snapsync against the naive baselines; `python -m bench` runs them.
