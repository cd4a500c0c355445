"""What only the demo, the benchmarks and the tests use: no agent or server imports this.

sample_cluster  a seeded generator of realistic cluster objects and their churn
link            a deterministic simulated link between the agent and server protocols
baselines       the naive ways of shipping state that snapsync is measured against
"""
