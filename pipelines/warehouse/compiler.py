"""Compile the models (written in DuckDB's SQL) for the engine they build on, with sqlglot.

DuckDB runs the model text as written, so its error line numbers are the file's. For any
other engine sqlglot transpiles the query, after the rewrites below for the constructs it
would otherwise pass through unchanged (and the engine would then reject or, worse, read
differently):

* `regexp_extract(text, pattern, group)` becomes `(regexp_match(text, pattern))[group]`,
  with DuckDB's empty string when a non-NULL text does not match.
* `arg_max(value, key)` / `arg_min(...)`, with or without `filter (where ...)`, become the
  first element of `array_agg(value order by key desc)` over the rows where both are not NULL
  (the rows DuckDB's arg_max considers).
* `try_cast` and `asof join` have no faithful PostgreSQL form: compiling a model that uses
  them is refused with an error naming the model, so it gets rewritten portably instead.
"""

from __future__ import annotations

from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from pipelines.errors import ConfigError

SOURCE_DIALECT = "duckdb"


def parse_model(sql: str, path: Path) -> exp.Expr:
    """Parse a model or check file (DuckDB's SQL) into one sqlglot expression.

    Raises:
        ConfigError: the file does not hold exactly one statement sqlglot can read.
    """
    try:
        statements = [s for s in sqlglot.parse(sql, read=SOURCE_DIALECT) if s is not None]
    except SqlglotError as error:
        first = str(error).split("\n", 1)[0]
        raise ConfigError(
            f"The SQL file {path} cannot be parsed: {first}. Each model and check file must "
            "hold one select statement in DuckDB's SQL."
        ) from None
    if len(statements) != 1:
        raise ConfigError(
            f"The SQL file {path} holds {len(statements)} statements; it must hold exactly one "
            "select."
        )
    return statements[0]


def compile_sql(sql: str, dialect: str, path: Path) -> str:
    """The model's query in the SQL of `dialect` (the text itself for DuckDB).

    Args:
        sql: the model's query, in DuckDB's SQL.
        dialect: the target engine's sqlglot dialect name (`duckdb`, `postgres`).
        path: the model file, for error messages.

    Raises:
        ConfigError: the query uses a construct with no faithful form in the target dialect.
    """
    body = sql.rstrip().rstrip(";").rstrip()
    if dialect == SOURCE_DIALECT:
        return body
    tree = parse_model(body, path)
    _refuse_unportable(tree, dialect, path)
    tree = tree.transform(_rewrite_regexp_extract).transform(_rewrite_arg_max)
    return tree.sql(dialect=dialect, pretty=True)


def _refuse_unportable(tree: exp.Expr, dialect: str, path: Path) -> None:
    for join in tree.find_all(exp.Join):
        if "ASOF" in (join.args.get("kind") or "").upper() or join.args.get("method") == "ASOF":
            raise ConfigError(
                f"The model {path} uses an ASOF JOIN, which {dialect} does not have. Write it "
                "portably (a window over the union of both sides, as fct_sms_message does)."
            )
    if any(cast.args.get("safe") for cast in tree.find_all(exp.Cast)) or any(
        True for _ in tree.find_all(exp.TryCast)
    ):
        raise ConfigError(
            f"The model {path} uses TRY_CAST, which {dialect} does not have (sqlglot would turn "
            "it into a CAST that fails on bad values). Make the value castable first, e.g. "
            "cast(nullif(regexp_extract(...), '') as bigint)."
        )


def _rewrite_regexp_extract(node: exp.Expression) -> exp.Expression:
    if not isinstance(node, exp.RegexpExtract):
        return node
    text = node.this
    group = node.args.get("group")
    number = int(str(group.this)) if isinstance(group, exp.Literal) else 0 if group is None else -1
    if number < 0:
        raise ConfigError(
            "regexp_extract needs a literal group number in a portable model "
            f"(not {group.sql(SOURCE_DIALECT) if group is not None else group})."
        )
    pattern = node.expression.copy()
    if number == 0:
        # group 0 is the whole match: capture the whole pattern as group 1
        pattern = exp.Concat(
            expressions=[exp.Literal.string("("), pattern, exp.Literal.string(")")]
        )
        number = 1
    # sqlglot's bracket indexes count from 0; it adds the target's offset (1 in PostgreSQL)
    index = exp.Literal.number(number - 1)
    matched = exp.Bracket(
        this=exp.Paren(this=exp.Anonymous(this="regexp_match", expressions=[text.copy(), pattern])),
        expressions=[index],
    )
    # DuckDB gives '' (not NULL) when a non-NULL text does not match
    empty_if_text = exp.Case(
        ifs=[exp.If(this=exp.Not(this=exp.Is(this=text.copy(), expression=exp.Null())),
                    true=exp.Literal.string(""))]
    )
    return exp.Coalesce(this=matched, expressions=[empty_if_text])


def _rewrite_arg_max(node: exp.Expression) -> exp.Expression:
    inner = node.this if isinstance(node, exp.Filter) else node
    if not isinstance(inner, exp.ArgMax | exp.ArgMin):
        return node
    value, key = inner.this, inner.expression
    both_known: exp.Expr = exp.and_(
        exp.Not(this=exp.Is(this=value.copy(), expression=exp.Null())),
        exp.Not(this=exp.Is(this=key.copy(), expression=exp.Null())),
    )
    if isinstance(node, exp.Filter):
        condition = node.expression.this
        both_known = exp.and_(exp.Paren(this=condition.copy()), both_known)
    ordered = exp.Order(
        expressions=[exp.Ordered(this=key.copy(), desc=isinstance(inner, exp.ArgMax))]
    )
    aggregate = exp.ArrayAgg(this=exp.Order(this=value.copy(), expressions=ordered.expressions))
    filtered = exp.Filter(this=aggregate, expression=exp.Where(this=both_known))
    return exp.Bracket(this=exp.Paren(this=filtered), expressions=[exp.Literal.number(0)])
