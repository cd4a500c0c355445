"""Developer tools around snapsync: the sample-cluster generator and what builds on it (churn
traces, the Kubernetes API emulator, the dictionary trainer). Not part of the installed package."""
