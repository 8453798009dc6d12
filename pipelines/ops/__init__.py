"""Operations around the sync: sending a text, the pre-flight check, run history, alerts,
reconcile, the personal-data policy.

Each module has one job; the command modules (`pipelines.commands`) print and choose exit codes.
"""
