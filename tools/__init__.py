"""Developer tools around snapsync: what builds on the sample-cluster generator
(snapsync.sim.sample_cluster) for tests and benchmarks (churn traces, the Kubernetes API
emulator, the dictionary trainer) and the fault-injecting proxy. Not part of the installed
package."""
