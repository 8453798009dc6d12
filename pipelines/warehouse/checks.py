"""Run the data checks (`sql/checks/*.sql`) after a build, in the spirit of dbt's tests.

Each check is a SQL file whose query returns the offending rows: no row means the check
passes. The files are compiled for the engine like the models, so every engine runs the same
checks. A check runs when every model it reads was built.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import DataCheckError
from pipelines.warehouse.compiler import compile_sql
from pipelines.warehouse.engine import EngineError, Warehouse
from pipelines.warehouse.incremental import restrict_inputs
from pipelines.warehouse.models import MODEL_SCHEMAS, CheckFile

MAX_SHOWN_ROWS = 5


@dataclass(frozen=True)
class CheckFailure:
    """A check that found offending rows: how many, and the first few of them."""

    check: CheckFile
    row_count: int
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]

    def describe(self) -> str:
        """The check's name, its count of offending rows and a sample, on one line."""
        sample = "; ".join(
            ", ".join(f"{col}={val!r}" for col, val in zip(self.columns, row, strict=True))
            for row in self.rows
        )
        more = f" (first {len(self.rows)} shown)" if self.row_count > len(self.rows) else ""
        hint = f" {self.check.hint}" if self.check.hint else ""
        return (
            f"check {self.check.name} ({self.check.path.name}) failed on {self.row_count} "
            f"row(s){more}: {sample}.{hint}"
        )


def runnable(check: CheckFile, built: set[str]) -> bool:
    """Whether every model the check reads was built (raw tables are always there)."""
    return all(
        relation in built
        for relation in check.reads
        if relation.split(".", 1)[0] in MODEL_SCHEMAS
    )


def run_checks(
    warehouse: Warehouse,
    checks: list[CheckFile],
    built: set[str],
    recomputed: dict[str, str] | None = None,
) -> tuple[int, list[CheckFailure]]:
    """Run every check whose models were built; return (checks run, failures).

    Args:
        recomputed: after an incremental build, each table updated by key and the predicate
            choosing its recomputed keys. A check declared `-- incremental_scope:
            changed_keys` then reads only those keys of such tables (the other keys passed
            the same check before and did not change); every other check reads everything.

    Raises:
        DataCheckError: a check could not run at all (a mart lost a column it needs).
    """
    failures: list[CheckFailure] = []
    ran = 0
    for check in checks:
        if not runnable(check, built):
            continue
        ran += 1
        text = check.sql
        if recomputed and check.changed_keys_only:
            scoped = {r: p for r, p in recomputed.items() if r in check.reads}
            text = restrict_inputs(text, check.path, scoped) if scoped else text
        sql = compile_sql(text, warehouse.dialect, check.path)
        try:
            counted = warehouse.query(f"select count(*) from (\n{sql}\n) as offending")
            row_count = int(counted.rows[0][0]) if counted.rows else 0
            if row_count == 0:
                continue
            sample = warehouse.query(
                f"select * from (\n{sql}\n) as offending limit {MAX_SHOWN_ROWS}"
            )
        except EngineError as error:
            raise DataCheckError(
                f"The data check {check.name} ({check.path}) could not run: {error}. A model "
                "probably lost a column the check needs; the build was rolled back and the "
                "previous marts are still in place."
            ) from error
        failures.append(
            CheckFailure(check, row_count, sample.columns, tuple(tuple(r) for r in sample.rows))
        )
    return ran, failures
