"""The planner: YAML plans, pre-flight checks with reasons, strategies and sequencing.

Pure code over a `ClusterSnapshot`: no network, no clock.
"""
