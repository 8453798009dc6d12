"""Find the SQL models under a `sql/` directory and order them by their dependencies.

Layout: `seeds/*.csv` become tables in schema `seeds`, `staging/*.sql` views in schema
`staging`, `marts/*.sql` tables in schema `analytics`. A model file holds one `select`
(plain SQL a reader can run); a model depends on every other model whose name appears in it
as a whole word, outside comments and string literals.
"""

from __future__ import annotations

import graphlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipelines.errors import ConfigError

Kind = Literal["seed", "view", "table"]

# (folder, file suffix, kind, schema): the build order of kinds is this order too.
LAYERS: tuple[tuple[str, str, Kind, str], ...] = (
    ("seeds", ".csv", "seed", "seeds"),
    ("staging", ".sql", "view", "staging"),
    ("marts", ".sql", "table", "analytics"),
)

# Column types of the shipped seeds; columns of any other seed are loaded as text.
SEED_COLUMN_TYPES: dict[str, dict[str, str]] = {
    "text_delivery_status": {
        "status_code": "BIGINT",
        "status": "VARCHAR",
        "status_category": "VARCHAR",
    },
    "message_direction": {"direction_code": "BIGINT", "direction": "VARCHAR"},
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_COMMENT_OR_STRING = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)


@dataclass(frozen=True)
class Model:
    """One model: a seed CSV, a staging view or a mart table."""

    name: str
    kind: Kind
    schema: str
    path: Path
    sql: str = ""
    depends_on: tuple[str, ...] = field(default=())

    @property
    def relation(self) -> str:
        """The model's qualified name, `schema.name`."""
        return f"{self.schema}.{self.name}"


def strip_comments_and_strings(sql: str) -> str:
    """Blank out comments and string literals, keeping every newline (line numbers hold)."""
    return _COMMENT_OR_STRING.sub(lambda match: re.sub(r"[^\n]", " ", match.group(0)), sql)


def discover_models(sql_dir: Path) -> list[Model]:
    """Read every model under `sql_dir` and return them in a valid build order.

    Args:
        sql_dir: the directory holding `seeds/`, `staging/` and `marts/`.

    Returns:
        The models, each after the models it depends on (seeds first, ties by name).

    Raises:
        ConfigError: the directory is missing, a file name is not a valid model name, two
            models share a name, or the dependencies form a cycle.
    """
    if not sql_dir.is_dir():
        raise ConfigError(
            f"The SQL model directory {sql_dir} does not exist. Run from the project checkout "
            "or pass the directory that holds seeds/, staging/ and marts/."
        )
    found: list[tuple[str, Kind, str, Path]] = []
    for folder, suffix, kind, schema in LAYERS:
        directory = sql_dir / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob(f"*{suffix}")):
            name = path.stem
            if not _NAME.match(name):
                raise ConfigError(
                    f"The model file {path} has a name DuckDB cannot use unquoted: rename it "
                    "to lowercase letters, digits and underscores, starting with a letter."
                )
            found.append((name, kind, schema, path))
    seen: dict[str, Path] = {}
    for name, _, _, path in found:
        if name in seen:
            raise ConfigError(
                f"Two models are named {name!r} ({seen[name]} and {path}); model names must be "
                "unique across seeds, staging and marts. Rename one of them."
            )
        seen[name] = path
    if not any(kind == "table" for _, kind, _, _ in found):
        raise ConfigError(f"No mart models found under {sql_dir / 'marts'}.")

    names = list(seen)
    models: dict[str, Model] = {}
    for name, kind, schema, path in found:
        sql = "" if kind == "seed" else path.read_text(encoding="utf-8")
        depends: tuple[str, ...] = ()
        if sql:
            code = strip_comments_and_strings(sql)
            depends = tuple(
                other
                for other in names
                if other != name and re.search(rf"\b{re.escape(other)}\b", code)
            )
        models[name] = Model(name, kind, schema, path, sql, depends)

    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    layer_rank = {kind: rank for rank, (_, _, kind, _) in enumerate(LAYERS)}
    for model in models.values():
        sorter.add(model.name, *model.depends_on)
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        cycle = " -> ".join(error.args[1])
        raise ConfigError(
            f"The SQL models depend on each other in a cycle ({cycle}); a model may only "
            "read models that do not read it back."
        ) from error
    ordered: list[Model] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda n: (layer_rank[models[n].kind], n))
        for name in ready:
            ordered.append(models[name])
            sorter.done(name)
    return ordered
