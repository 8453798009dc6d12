"""Operations around the sync: sending a text, checks, run history, alerts, reconcile, privacy.

Each module has one job; only `pipelines.ops.cli` prints and chooses exit codes.
"""
