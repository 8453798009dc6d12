"""Find the SQL models and data checks under a `sql/` directory and order them.

Layout: `seeds/*.csv` become tables in schema `seeds`, `staging/*.sql` views in schema
`staging`, `intermediate/*.sql` tables in schema `intermediate`, `marts/*.sql` tables in
schema `analytics`; `checks/*.sql` are data checks (see checks.py). A model or check file
holds one `select` in DuckDB's SQL and declares every relation it reads in a header comment:

    -- depends_on: staging.stg_quorum__sendsms, quorum_raw.sendsms

The declaration orders the build; it is verified against the tables sqlglot finds in the
query, so it cannot drift from the SQL.
"""

from __future__ import annotations

import graphlib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlglot import exp

from pipelines.errors import ConfigError
from pipelines.warehouse.compiler import parse_model

Kind = Literal["seed", "view", "table"]

# (folder, file suffix, kind, schema): the build order of kinds is this order too.
LAYERS: tuple[tuple[str, str, Kind, str], ...] = (
    ("seeds", ".csv", "seed", "seeds"),
    ("staging", ".sql", "view", "staging"),
    ("intermediate", ".sql", "table", "intermediate"),
    ("marts", ".sql", "table", "analytics"),
)
MODEL_SCHEMAS = frozenset(schema for _, _, _, schema in LAYERS)
CHECKS_FOLDER = "checks"

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
_DEPENDS_ON = re.compile(r"^\s*--\s*depends_on\s*:(.*)$", re.MULTILINE)
_HINT = re.compile(r"^\s*--\s*hint\s*:(.*)$", re.MULTILINE)
_RELATION = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
_UNIQUE_KEY = re.compile(r"^\s*--\s*unique_key\s*:(.*)$", re.MULTILINE)
_RECOMPUTE_TOGETHER = re.compile(r"^\s*--\s*recompute_together_by\s*:(.*)$", re.MULTILINE)
_TOGETHER_READS = re.compile(r"^\s*--\s*together_reads\s*:(.*)$", re.MULTILINE)
_TOGETHER_WRITES = re.compile(r"^\s*--\s*together_writes\s*:(.*)$", re.MULTILINE)
_TOGETHER_WITHIN = re.compile(r"^\s*--\s*together_within\s*:(.*)$", re.MULTILINE)
_WITHIN_FORM = re.compile(r"^([a-z_][a-z0-9_]*)\s+(\d+)\s+hours?$")
_GRAINS = re.compile(r"^grain\((.*)\)$")
_ADDITIVE = re.compile(r"^\s*--\s*incremental_strategy\s*:(.*)$", re.MULTILINE)
_ADDITIVE_FORM = re.compile(r"^additive\((.*)\)$")
_STORED_ORDER = re.compile(r"^\s*--\s*stored_order\s*:(.*)$", re.MULTILINE)
_SCOPE = re.compile(r"^\s*--\s*incremental_scope\s*:\s*changed_keys\s*$", re.MULTILINE)
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Additive:
    """How an additive model's columns combine (`-- incremental_strategy: additive(...)`).

    Every non-key column not named here is a sum (an integer); `count` names the column
    counting the key's input rows (a key whose count falls to 0 has no row any more);
    `minimum`/`maximum` name columns that are a min/max over the rows: a key whose removed
    row may have held that value is recomputed from its input rows; `group` names columns
    that, besides the key, tell a key's rows apart (a key has one row per group value).
    """

    count: str
    minimum: tuple[str, ...] = ()
    maximum: tuple[str, ...] = ()
    group: tuple[str, ...] = ()


@dataclass(frozen=True)
class UniqueKey:
    """How a table model's rows are keyed, so an incremental build can recompute some keys.

    Attributes:
        column: the key column (`-- unique_key: bulk_sms_id`); empty for a grain key.
        grains: for a `grouping sets` model, (value of its `grain` column, key column of that
            grain) pairs (`-- unique_key: grain(campaign=bulk_sms_id, day=send_date)`).
        together_by: rows sharing a value of this column are recomputed together
            (`-- recompute_together_by: supporter_id`), for models where a row depends on
            other rows of the same group (fct_sms_message's replies).
        together_reads: the model's own columns through which a row depends on the other
            rows of its group (`-- together_reads: direction, archived, send_time`): fed back
            as the same-named input columns (with the key and group columns, every other
            input column NULL and no rows of the other inputs), they give the same
            `together_writes` values. Empty: the whole group is recomputed from its inputs.
        together_writes: the columns that depend on the other rows of the group
            (`-- together_writes: reply_to_sendsms_id, replies`); every other column of a row
            depends on its own input rows only.
        together_within: (column, hours) of `-- together_within: send_time 72 hours`: a
            row's `together_writes` depend only on the rows of its group whose column lies
            within that many hours of its own, and a row where it is NULL neither has
            `together_writes` of its own nor changes another's; None: on the whole group.
        additive: the model is a sum over its input rows, maintained by adding the night's
            new rows and subtracting the old ones (`-- incremental_strategy:
            additive(count=texts, min=first_send_time, max=last_send_time)`); None otherwise.
    """

    column: str = ""
    grains: tuple[tuple[str, str], ...] = ()
    together_by: str = ""
    together_reads: tuple[str, ...] = ()
    together_writes: tuple[str, ...] = ()
    together_within: tuple[str, int] | None = None
    additive: Additive | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """Every key column, in order."""
        return tuple(c for _, c in self.grains) if self.grains else (self.column,)


@dataclass(frozen=True)
class Model:
    """One model: a seed CSV, a staging view, an intermediate table or a mart table.

    Attributes:
        depends_on: the names of the models it reads (the build order's edges).
        reads: every relation it declares, models and raw tables alike (`schema.name`).
    """

    name: str
    kind: Kind
    schema: str
    path: Path
    layer: str
    sql: str = ""
    depends_on: tuple[str, ...] = field(default=())
    reads: tuple[str, ...] = field(default=())
    unique_key: UniqueKey | None = None
    digest: str = ""
    #: `-- stored_order: column, ...`: after a full build, DuckDB keeps the rows in this order
    stored_order: tuple[str, ...] = ()

    @property
    def relation(self) -> str:
        """The model's qualified name, `schema.name`."""
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class CheckFile:
    """One data check: a query returning the offending rows, and what to do about them."""

    name: str
    path: Path
    sql: str
    reads: tuple[str, ...]
    hint: str = ""
    #: `-- incremental_scope: changed_keys`: an offending row depends only on rows of one key,
    #: so after an incremental build the check reads only the keys that were recomputed.
    changed_keys_only: bool = False


def declared_relations(sql: str, path: Path) -> tuple[str, ...]:
    """The relations a file declares in its `-- depends_on:` comment lines, in order.

    Raises:
        ConfigError: no declaration, or a name that is not `schema.table`.
    """
    lines = _DEPENDS_ON.findall(sql)
    if not lines:
        raise ConfigError(
            f"The SQL file {path} does not declare what it reads. Add a header line "
            "`-- depends_on: schema.table, ...` naming every table and view its query reads "
            "(`-- depends_on:` alone when it reads none)."
        )
    names = [n.strip().lower() for line in lines for n in line.split(",") if n.strip()]
    for name in names:
        if not _RELATION.match(name):
            raise ConfigError(
                f"The SQL file {path} declares {name!r} in depends_on; write each relation as "
                "schema.table (e.g. analytics.fct_sms_message)."
            )
    return tuple(dict.fromkeys(names))


def relations_in_query(sql: str, path: Path) -> set[str]:
    """The tables and views a query reads, as sqlglot finds them (CTE names left out).

    Raises:
        ConfigError: the query cannot be parsed, or reads a table without naming its schema.
    """
    tree = parse_model(sql, path)
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    found: set[str] = set()
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if not name:
            continue
        if not table.db:
            if name in ctes:
                continue
            raise ConfigError(
                f"The SQL file {path} reads {name!r} without a schema; name it schema.table "
                "(e.g. staging.stg_quorum__sendsms) so it builds the same on every engine."
            )
        found.add(f"{table.db.lower()}.{name}")
    return found


def verify_declaration(sql: str, path: Path, label: str) -> tuple[str, ...]:
    """Check a file's `depends_on` against its query and return the declared relations.

    Raises:
        ConfigError: naming the file and every relation declared but not read, or read but
            not declared.
    """
    declared = declared_relations(sql, path)
    found = relations_in_query(sql, path)
    undeclared = sorted(found - set(declared))
    unread = sorted(set(declared) - found)
    if undeclared or unread:
        parts = []
        if undeclared:
            parts.append(f"reads {', '.join(undeclared)} without declaring it")
        if unread:
            parts.append(f"declares {', '.join(unread)} but does not read it")
        raise ConfigError(
            f"The {label} {path} {' and '.join(parts)}. Make its `-- depends_on:` line list "
            "exactly the tables and views its query reads."
        )
    return declared


def discover_models(sql_dir: Path) -> list[Model]:
    """Read every model under `sql_dir` and return them in a valid build order.

    Args:
        sql_dir: the directory holding `seeds/`, `staging/`, `intermediate/` and `marts/`.

    Returns:
        The models, each after the models it depends on (seeds first, ties by layer and name).

    Raises:
        ConfigError: the directory is missing, a file name is not a valid model name, two
            models share a name, a dependency declaration disagrees with the query or names
            no model, or the dependencies form a cycle.
    """
    if not sql_dir.is_dir():
        raise ConfigError(
            f"The SQL model directory {sql_dir} does not exist. Run from the project checkout "
            "or pass the directory that holds seeds/, staging/ and marts/."
        )
    found: list[tuple[str, Kind, str, Path, str]] = []
    for folder, suffix, kind, schema in LAYERS:
        directory = sql_dir / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob(f"*{suffix}")):
            _require_name(path)
            found.append((path.stem, kind, schema, path, folder))
    seen: dict[str, Path] = {}
    for name, _, _, path, _ in found:
        if name in seen:
            raise ConfigError(
                f"Two models are named {name!r} ({seen[name]} and {path}); model names must be "
                "unique across seeds, staging, intermediate and marts. Rename one of them."
            )
        seen[name] = path
    if not any(layer == "marts" for *_, layer in found):
        raise ConfigError(f"No mart models found under {sql_dir / 'marts'}.")

    by_relation = {f"{schema}.{name}": name for name, _, schema, _, _ in found}
    models: dict[str, Model] = {}
    for name, kind, schema, path, layer in found:
        if kind == "seed":
            digest = hashlib.sha256(_read_bytes(path)).hexdigest()
            models[name] = Model(name, kind, schema, path, layer, digest=digest)
            continue
        sql = path.read_text(encoding="utf-8")
        if not sql.strip():
            raise ConfigError(f"The model {path} is empty; it must hold one select.")
        reads = verify_declaration(sql, path, "model")
        depends = tuple(_model_names(reads, by_relation, path))
        key = unique_key_of(sql, path) if kind == "table" else None
        digest = hashlib.sha256(sql.encode("utf-8")).hexdigest()
        order = stored_order_of(sql, path) if kind == "table" else ()
        models[name] = Model(
            name, kind, schema, path, layer, sql, depends, reads, key, digest, order
        )
    return _ordered(models)


def unique_key_of(sql: str, path: Path) -> UniqueKey | None:
    """The `-- unique_key:` (and `-- recompute_together_by:`) declaration of a table model.

    Returns:
        None when the model declares no key: it is rebuilt whole on every build.

    Raises:
        ConfigError: a declaration that is not a column name or `grain(value=column, ...)`.
    """
    keys = [line.strip().lower() for line in _UNIQUE_KEY.findall(sql)]
    together = [line.strip().lower() for line in _RECOMPUTE_TOGETHER.findall(sql)]
    if not keys:
        if together:
            raise ConfigError(
                f"The model {path} declares recompute_together_by without a unique_key; add "
                "`-- unique_key: column` or remove the line."
            )
        if any(form.search(sql) for form in (_TOGETHER_READS, _TOGETHER_WRITES, _TOGETHER_WITHIN)):
            raise ConfigError(
                f"The model {path} declares together_reads/together_writes/together_within "
                "without a unique_key and recompute_together_by; add both or remove the lines."
            )
        if _ADDITIVE.search(sql):
            raise ConfigError(
                f"The model {path} declares incremental_strategy without a unique_key; add "
                "`-- unique_key: column` (the additive sums are kept per key) or remove it."
            )
        return None
    usage = (
        f"The model {path} declares unique_key {keys[0]!r}; write one line `-- unique_key: "
        "column` or, for a grouping-sets model with a `grain` column, `-- unique_key: "
        "grain(value=column, ...)`."
    )
    if len(keys) > 1 or len(together) > 1 or (together and not _COLUMN.match(together[0])):
        raise ConfigError(usage)
    together_by = together[0] if together else ""
    grains = _GRAINS.match(keys[0])
    if grains is None:
        if not _COLUMN.match(keys[0]):
            raise ConfigError(usage)
        reads, writes = _together_columns_of(sql, path, together_by)
        return UniqueKey(
            column=keys[0], together_by=together_by, together_reads=reads,
            together_writes=writes, together_within=_together_within_of(sql, path, reads),
            additive=_additive_of(sql, path),
        )
    pairs: list[tuple[str, str]] = []
    for part in grains.group(1).split(","):
        value, _, column = (p.strip() for p in part.partition("="))
        if not _COLUMN.match(value) or not _COLUMN.match(column):
            raise ConfigError(usage)
        pairs.append((value, column))
    if not pairs or together_by or any(
        form.search(sql) for form in (_TOGETHER_READS, _TOGETHER_WRITES, _TOGETHER_WITHIN)
    ):
        raise ConfigError(usage)
    return UniqueKey(grains=tuple(pairs), additive=_additive_of(sql, path))


def _together_columns_of(
    sql: str, path: Path, together_by: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The `-- together_reads:` and `-- together_writes:` column lists (both or neither)."""
    reads = [line.strip().lower() for line in _TOGETHER_READS.findall(sql)]
    writes = [line.strip().lower() for line in _TOGETHER_WRITES.findall(sql)]
    if not reads and not writes:
        return (), ()
    usage = (
        f"The model {path} declares together_reads/together_writes wrongly; write, under "
        "`-- recompute_together_by: column`, one line `-- together_reads: column, ...` (the "
        "columns a row reads from the other rows of its group) and one line "
        "`-- together_writes: column, ...` (the columns that depend on them), or neither."
    )
    if not together_by or len(reads) != 1 or len(writes) != 1:
        raise ConfigError(usage)
    read_columns = tuple(c.strip() for c in reads[0].split(","))
    write_columns = tuple(c.strip() for c in writes[0].split(","))
    if not all(_COLUMN.match(c) for c in read_columns + write_columns):
        raise ConfigError(usage)
    return read_columns, write_columns


def stored_order_of(sql: str, path: Path) -> tuple[str, ...]:
    """The columns of a table model's `-- stored_order: column, ...` line; () without one.

    Raises:
        ConfigError: more than one such line, or one that is not a list of column names.
    """
    lines = [line.strip().lower() for line in _STORED_ORDER.findall(sql)]
    if not lines:
        return ()
    columns = tuple(c.strip() for c in lines[0].split(","))
    if len(lines) > 1 or not all(_COLUMN.match(c) for c in columns):
        raise ConfigError(
            f"The model {path} declares stored_order wrongly; write one line "
            "`-- stored_order: column, column` naming columns of its result, or remove it."
        )
    return columns


def _together_within_of(
    sql: str, path: Path, reads: tuple[str, ...]
) -> tuple[str, int] | None:
    """The `-- together_within: column N hours` declaration, or None."""
    lines = [line.strip().lower() for line in _TOGETHER_WITHIN.findall(sql)]
    if not lines:
        return None
    form = _WITHIN_FORM.match(lines[0]) if len(lines) == 1 else None
    if form is None or form.group(1) not in reads or int(form.group(2)) <= 0:
        raise ConfigError(
            f"The model {path} declares together_within wrongly; write one line "
            "`-- together_within: column N hours`, where the column is one of its "
            "together_reads and N a whole number of hours above 0, or remove it."
        )
    return form.group(1), int(form.group(2))


def _additive_of(sql: str, path: Path) -> Additive | None:
    """The `-- incremental_strategy: additive(count=c, min=c, max=c, ...)` declaration."""
    lines = [line.strip().lower() for line in _ADDITIVE.findall(sql)]
    if not lines:
        return None
    usage = (
        f"The model {path} declares incremental_strategy {lines[0]!r}; write one line "
        "`-- incremental_strategy: additive(count=column, min=column, max=column, "
        "group=column)` naming the row-count column once and any min/max and group columns."
    )
    form = _ADDITIVE_FORM.match(lines[0])
    if len(lines) > 1 or form is None:
        raise ConfigError(usage)
    named: dict[str, list[str]] = {"count": [], "min": [], "max": [], "group": []}
    for part in form.group(1).split(","):
        role, _, column = (p.strip() for p in part.partition("="))
        if role not in named or not _COLUMN.match(column):
            raise ConfigError(usage)
        named[role].append(column)
    if len(named["count"]) != 1:
        raise ConfigError(usage)
    return Additive(
        named["count"][0], tuple(named["min"]), tuple(named["max"]), tuple(named["group"])
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"The seed file {path} cannot be read: {error}.") from error


def discover_checks(sql_dir: Path, models: list[Model]) -> list[CheckFile]:
    """Read every data check under `sql_dir/checks`, sorted by name.

    Raises:
        ConfigError: a check's declaration disagrees with its query, or names a model
            relation that is not among the models.
    """
    directory = sql_dir / CHECKS_FOLDER
    if not directory.is_dir():
        return []
    by_relation = {m.relation: m.name for m in models}
    checks: list[CheckFile] = []
    for path in sorted(directory.glob("*.sql")):
        _require_name(path)
        sql = path.read_text(encoding="utf-8")
        reads = verify_declaration(sql, path, "data check")
        _model_names(reads, by_relation, path)
        hint = " ".join(line.strip() for line in _HINT.findall(sql))
        scoped = bool(_SCOPE.search(sql))
        checks.append(CheckFile(path.stem, path, sql, reads, hint, scoped))
    return checks


def _require_name(path: Path) -> None:
    if not _NAME.match(path.stem):
        raise ConfigError(
            f"The file {path} has a name that cannot be used unquoted: rename it to lowercase "
            "letters, digits and underscores, starting with a letter."
        )


def _model_names(reads: tuple[str, ...], by_relation: dict[str, str], path: Path) -> list[str]:
    """The models among the relations read; a model-schema relation that is none is an error."""
    names: list[str] = []
    for relation in reads:
        if relation in by_relation:
            names.append(by_relation[relation])
        elif relation.split(".", 1)[0] in MODEL_SCHEMAS:
            raise ConfigError(
                f"The SQL file {path} depends on {relation}, but no model builds it. Fix the "
                "name, or add the model under the folder of its schema."
            )
    return names


def _ordered(models: dict[str, Model]) -> list[Model]:
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    layer_rank = {folder: rank for rank, (folder, _, _, _) in enumerate(LAYERS)}
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
        ready = sorted(sorter.get_ready(), key=lambda n: (layer_rank[models[n].layer], n))
        for name in ready:
            ordered.append(models[name])
            sorter.done(name)
    return ordered
