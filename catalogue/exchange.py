"""The whole catalogue as one versioned JSON-lines file: ``manage.py export`` and ``import``.

The file is a header line (format, format version, the schema's latest migrations, when, and
how many rows of each kind follow), then one JSON object per row, ``{"kind": …, "data": …}``,
grouped by kind in dependency order (``KINDS``). Rows name other rows by natural keys, never
by primary keys: a paper by ``{"arxiv_id": …}`` or ``{"source_key": …}``, a user by username,
a topic by slug, a saved search by ``[username, name]``. Papers also keep their catalogue
numbers (``id``): a paper without an arXiv id is at ``/papers/<number>/`` and merged papers'
aliases (``#<number>``) point at such URLs, so the number is part of the public record; the
import restores it into an empty table and moves the sequence past it.

Every concrete field of a model is written unless its kind skips it (and says why), so a field
added later is exported without touching this module; a field the importing code does not know
is a bad line (the file was written by a newer version).

Not exported: sessions; ingest runs and their rejections (operational logs of what a fetch
did, not catalogue content; a restore starts a fresh log); the indexes a large run dropped
and has yet to build (``ingest.deferral``: the source database's state, not content); the
admin's history (``LogEntry``: it names rows by primary key); beat schedules (the migrations
create the fixed ones and a restored ``Source`` recreates its own); embeddings unless asked
for (derived: the worker recomputes them from title and abstract); the papers' word pairs
(``catalogue.phrases``: derived, and every imported paper is pending until the worker pairs
it); the common words' rows by month (``catalogue.wordmonths``: derived, built again by the
worker after the next ingest or by ``manage.py build_word_months``).

The import is all or nothing, in one transaction: a restore that silently lacks some rows is
worse than one that stops, and every bad line is reported (with its line number) before the
rollback so that one pass finds them all.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import metadata
from typing import IO, Any
from uuid import UUID

from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.postgres.aggregates import ArrayAgg
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.management.color import no_style
from django.db import DatabaseError, connection, models, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Q, Value
from django.db.models.functions import Concat
from django.utils import timezone
from pgvector import HalfVector

from catalogue.models import (
    AlertDelivery,
    Paper,
    PaperAlias,
    PaperEmbedding,
    PaperTopic,
    PopularitySnapshot,
    SavedSearch,
    Sighting,
    Topic,
)

FORMAT = "paper-catalogue-export"
FORMAT_VERSION = 1
# Apps whose latest migration the header records: the schema the rows were read from.
SCHEMA_APPS = ("auth", "catalogue", "ingest")
BATCH_SIZE = 2000
MAX_REPORTED = 20  # bad lines listed in full; the rest are counted

User = get_user_model()


class ImportRefused(Exception):
    """The file or the database is not one to import into: nothing was written."""


class ImportFailed(Exception):
    """Some lines were bad: the transaction was rolled back, nothing was imported."""

    def __init__(self, problems: list[str], total: int):
        self.problems = problems
        self.total = total
        more = f"\n… and {total - len(problems)} more" if total > len(problems) else ""
        super().__init__(
            f"{total} problem(s); nothing was imported:\n" + "\n".join(problems) + more
        )


class BadRow(ValueError):
    """A row that cannot be imported, with the reason."""


# --- natural keys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldsKey:
    """A row named by the values of ``fields`` (one field: the value itself; several: a list)."""

    model: type[models.Model]
    fields: tuple[str, ...]

    def encode(self, values: tuple) -> Any:
        return values[0] if len(self.fields) == 1 else list(values)

    def decode(self, value: Any) -> tuple:
        values = [value] if len(self.fields) == 1 else value
        if not (isinstance(values, list) and len(values) == len(self.fields)):
            raise BadRow(f"expected {len(self.fields)} values, got {value!r}")
        if not all(isinstance(v, str) for v in values):
            raise BadRow(f"expected text, got {value!r}")
        return tuple(values)

    def resolve(self, keys: set[tuple]) -> dict[tuple, int]:
        first = {key[0] for key in keys}
        rows = self.model.objects.filter(**{f"{self.fields[0]}__in": first})
        found = {tuple(row[:-1]): row[-1] for row in rows.values_list(*self.fields, "pk")}
        return {key: pk for key, pk in found.items() if key in keys}


class PaperKey:
    """A paper is named by its arXiv id, else its source key (one of them is always set)."""

    model = Paper
    fields = ("arxiv_id", "source_key")

    def encode(self, values: tuple) -> dict:
        arxiv_id, source_key = values
        return {"arxiv_id": arxiv_id} if arxiv_id is not None else {"source_key": source_key}

    def decode(self, value: Any) -> tuple:
        if not (isinstance(value, dict) and len(value) == 1):
            raise BadRow(f'a paper is {{"arxiv_id": …}} or {{"source_key": …}}, got {value!r}')
        ((name, key),) = value.items()
        if name not in self.fields or not isinstance(key, str):
            raise BadRow(f'a paper is {{"arxiv_id": …}} or {{"source_key": …}}, got {value!r}')
        return (name, key)

    def resolve(self, keys: set[tuple]) -> dict[tuple, int]:
        wanted = {name: {key for n, key in keys if n == name} for name in self.fields}
        rows = Paper.objects.filter(
            Q(arxiv_id__in=wanted["arxiv_id"]) | Q(source_key__in=wanted["source_key"])
        ).values_list("pk", "arxiv_id", "source_key")
        found = {}
        for pk, arxiv_id, source_key in rows:
            found[("arxiv_id", arxiv_id)] = pk
            found[("source_key", source_key)] = pk
        return {key: pk for key, pk in found.items() if key in keys}


PAPER = PaperKey()
USER = FieldsKey(User, (User.USERNAME_FIELD,))
TOPIC = FieldsKey(Topic, ("slug",))
SAVED_SEARCH = FieldsKey(SavedSearch, ("user__username", "name"))


# --- kinds of rows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One model's rows in the file."""

    name: str
    model: type[models.Model]
    references: dict[str, Any] = field(default_factory=dict)  # foreign key -> natural key
    skip: tuple[str, ...] = ()  # fields not exported
    keeps_pk: bool = False
    optional: bool = False  # only with --with-embeddings

    def plain_fields(self) -> list[models.Field]:
        return [
            f
            for f in self.model._meta.concrete_fields
            if not f.generated
            and not f.is_relation
            and f.name not in self.skip
            and (self.keeps_pk or not f.primary_key)
        ]

    def extras(self) -> dict[str, Any]:
        """Values beside the model's own fields (many-to-many links), as annotations."""
        return {}

    def rows(self, chunk_size: int = BATCH_SIZE) -> Iterator[dict]:
        """Every row as the file has it, streamed through a server-side cursor."""
        lookups = [
            f"{name}__{part}" for name, key in self.references.items() for part in key.fields
        ]
        columns = [f.attname for f in self.plain_fields()]
        queryset = self.model.objects.order_by("pk").annotate(**self.extras())
        for values in queryset.values(*columns, *lookups, *self.extras()).iterator(chunk_size):
            for name, key in self.references.items():
                parts = tuple(values.pop(f"{name}__{part}") for part in key.fields)
                values[name] = key.encode(parts)
            yield values

    def extra_names(self) -> tuple[str, ...]:
        return tuple(self.extras())

    def insert(self, objects: list[models.Model], rows: list[dict]) -> None:
        copy_into(self.model, objects, with_pk=self.keeps_pk)

    def clear(self) -> None:
        """Delete every row (``--replace``); rows that name these are deleted before."""
        _delete_all(self.model)


def _delete_all(model: type[models.Model]) -> None:
    # One statement: the ORM would first read every row to emulate cascades.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}")


def copy_into(model: type[models.Model], objects: list[models.Model], *, with_pk: bool) -> None:
    """Insert ``objects`` with one COPY: bulk_create spends ten times longer in Python
    building and splitting its SQL than PostgreSQL spends storing the rows."""
    fields = [
        f
        for f in model._meta.concrete_fields
        if not f.generated and (with_pk or not isinstance(f, models.AutoField))
    ]
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,  # psycopg's errors as Django's DatabaseError
        cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
    ):
        for obj in objects:
            copy.write_row(
                [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]
            )


class UserKind(Kind):
    def extras(self) -> dict[str, Any]:
        permission = Concat(
            "user_permissions__content_type__app_label",
            Value("."),
            "user_permissions__codename",
            output_field=models.TextField(),
        )
        return {
            "group_names": ArrayAgg(
                "groups__name", distinct=True, filter=Q(groups__isnull=False), default=[]
            ),
            "permission_names": ArrayAgg(
                permission, distinct=True, filter=Q(user_permissions__isnull=False), default=[]
            ),
        }

    def clear(self) -> None:
        for through in (User.groups.through, User.user_permissions.through, LogEntry):
            _delete_all(through)
        _delete_all(User)

    def insert(self, objects: list[models.Model], rows: list[dict]) -> None:
        User.objects.bulk_create(objects)
        groups = _by_name(Group, {g for row in rows for g in row["group_names"]})
        permissions = _permissions({p for row in rows for p in row["permission_names"]})
        User.groups.through.objects.bulk_create(
            User.groups.through(user_id=user.pk, group_id=groups[name])
            for user, row in zip(objects, rows, strict=True)
            for name in row["group_names"]
        )
        User.user_permissions.through.objects.bulk_create(
            User.user_permissions.through(user_id=user.pk, permission_id=permissions[name])
            for user, row in zip(objects, rows, strict=True)
            for name in row["permission_names"]
        )


class GroupKind(Kind):
    """Groups by name: the migrations create the curator group, so an existing group takes
    the file's permissions."""

    def extras(self) -> dict[str, Any]:
        permission = Concat(
            "permissions__content_type__app_label",
            Value("."),
            "permissions__codename",
            output_field=models.TextField(),
        )
        return {
            "permission_names": ArrayAgg(
                permission, distinct=True, filter=Q(permissions__isnull=False), default=[]
            )
        }

    def clear(self) -> None:
        """Groups stay: the file's groups take their permissions, others keep theirs."""

    def insert(self, objects: list[models.Model], rows: list[dict]) -> None:
        permissions = _permissions({p for row in rows for p in row["permission_names"]})
        for new, row in zip(objects, rows, strict=True):
            group, _ = Group.objects.get_or_create(name=new.name)
            group.permissions.set([permissions[name] for name in row["permission_names"]])


class SourceKind(Kind):
    """Sources one by one through ``save()``: it creates each one's beat schedule."""

    def insert(self, objects: list[models.Model], rows: list[dict]) -> None:
        for source in objects:
            source.save()

    def clear(self) -> None:
        """One by one: each takes its beat entry with it; its runs stay, without a source."""
        for source in self.model.objects.all():
            source.delete()


def _by_name(model, names: set[str]) -> dict[str, int]:
    found = dict(model.objects.filter(name__in=names).values_list("name", "pk"))
    missing = names - found.keys()
    if missing:
        raise BadRow(f"no {model._meta.verbose_name} named {sorted(missing)}")
    return found


def _permissions(names: set[str]) -> dict[str, int]:
    """Permissions by "app_label.codename" (they exist once the database is migrated)."""
    labels = {tuple(name.split(".", 1)) for name in names if "." in name}
    rows = Permission.objects.filter(
        content_type__app_label__in={app for app, _ in labels},
        codename__in={codename for _, codename in labels},
    ).values_list("content_type__app_label", "codename", "pk")
    found = {f"{app}.{codename}": pk for app, codename, pk in rows}
    missing = names - found.keys()
    if missing:
        raise BadRow(f"unknown permission(s) {sorted(missing)}")
    return found


def _ingest_kinds() -> list[Kind]:
    # By name, as the admin queues ingest tasks: catalogue never imports ingest.
    source = apps.get_model("ingest", "Source")

    # The beat entry is recreated by Source.save(), not copied (its primary key is local).
    return [SourceKind("source", source, skip=("periodic_task",))]


def kinds() -> list[Kind]:
    """Every kind of row, in dependency order: a row only names rows of earlier kinds."""
    return [
        GroupKind("group", Group),
        UserKind("user", User),
        *_ingest_kinds(),
        Kind("topic", Topic),
        Kind("paper", Paper, keeps_pk=True),
        Kind("paper_alias", PaperAlias, {"paper": PAPER}),
        Kind("sighting", Sighting, {"paper": PAPER}),
        Kind("popularity_snapshot", PopularitySnapshot, {"paper": PAPER}),
        # A link's date is its paper's, copied by the database (``PaperTopic.published_on``).
        Kind("paper_topic", PaperTopic, {"paper": PAPER, "topic": TOPIC}, skip=("published_on",)),
        Kind("saved_search", SavedSearch, {"user": USER}),
        Kind("alert_delivery", AlertDelivery, {"saved_search": SAVED_SEARCH, "paper": PAPER}),
        Kind(
            "paper_embedding",
            PaperEmbedding,
            {"paper": PAPER},
            skip=("published_on",),  # the paper's, copied by the database
            optional=True,
        ),
    ]


def _selected(with_embeddings: bool) -> list[Kind]:
    return [kind for kind in kinds() if with_embeddings or not kind.optional]


# --- export ------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()  # microseconds kept (DjangoJSONEncoder drops them)
    if isinstance(value, HalfVector):
        return value.to_list()  # float16 values are exact as JSON numbers
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise TypeError(f"cannot export {type(value).__name__}")


def _line(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False, default=_jsonable).encode() + b"\n"


def header(selected: list[Kind]) -> dict:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "app_version": _app_version(),
        "schema": _applied_schema(),
        "created_at": timezone.now().isoformat(),
        "counts": {kind.name: kind.model.objects.count() for kind in selected},
    }


def _app_version() -> str:
    try:
        return metadata.version("paper-catalogue")
    except metadata.PackageNotFoundError:
        return "unknown"


def _applied_schema() -> dict[str, str]:
    applied = MigrationRecorder(connection).applied_migrations()
    return {app: max(name for a, name in applied if a == app) for app in SCHEMA_APPS}


def export_catalogue(
    out: IO[bytes],
    *,
    with_embeddings: bool = False,
    progress: Callable[[dict], Callable[[int], None]] = lambda counts: lambda n: None,
) -> dict[str, int]:
    """Write the whole catalogue to ``out``; returns the rows written per kind.

    One repeatable-read transaction: every kind is read from the same snapshot, so an ingest
    running meanwhile cannot leave a sighting without its paper in the file.
    """
    selected = _selected(with_embeddings)
    with _snapshot():
        head = header(selected)
        out.write(_line(head))
        advance = progress(head["counts"])
        for kind in selected:
            written = 0
            for row in kind.rows():
                out.write(_line({"kind": kind.name, "data": row}))
                written += 1
                if written % BATCH_SIZE == 0:
                    advance(BATCH_SIZE)
            advance(written % BATCH_SIZE)
    return head["counts"]


@contextmanager
def _snapshot():
    connection.ensure_connection()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:  # must be the transaction's first statement
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with connection.cursor() as cursor:
            # Every row is read: plan the cursors for the whole result, not its first tenth
            # (nested loops over the papers' index otherwise, several times slower).
            cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        yield


# --- import ------------------------------------------------------------------------------------


def read_header(line: bytes) -> dict:
    """The header of an export, checked: a known format and version, a schema we know."""
    try:
        head = json.loads(line)
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise ImportRefused("line 1 is not a catalogue export's header (written by `export`?)")
    version = head.get("version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ImportRefused(
            f"the file's format version is {version!r}; this catalogue reads version "
            f"{FORMAT_VERSION} and older (a newer version wrote it: upgrade, then import)"
        )
    if not isinstance(head.get("counts"), dict) or not isinstance(head.get("schema"), dict):
        raise ImportRefused("the header lacks its counts or schema")
    _check_schema(head["schema"])
    return head


def _check_schema(schema: dict) -> None:
    executor = MigrationExecutor(connection)
    known = executor.loader.disk_migrations
    for app, name in schema.items():
        if (app, name) not in known:
            raise ImportRefused(
                f"the file was exported from a newer schema (migration {app}.{name} is "
                "unknown here): upgrade the code, migrate, then import"
            )
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise ImportRefused("this database is not fully migrated: run `manage.py migrate` first")


def refuse_unless_empty(selected: list[Kind]) -> None:
    """Import restores into an empty catalogue: merging two catalogues is another job."""
    present = {
        kind.name: count
        for kind in selected
        if kind.model is not Group  # the migrations create the curator group
        and (count := kind.model.objects.count())
    }
    if present:
        rows = ", ".join(f"{count} {name}" for name, count in present.items())
        raise ImportRefused(
            f"the catalogue is not empty ({rows}); import restores into an empty database: "
            "create one, run `manage.py migrate`, and import there (or --replace this one)"
        )


def clear_catalogue() -> None:
    """Delete every kind of row an import writes, the most dependent first, and sessions.

    DELETE, not TRUNCATE: readers keep seeing the old catalogue until the import commits
    (TRUNCATE would lock them out for the whole import).
    """
    for kind in reversed(kinds()):
        kind.clear()
    Session.objects.all().delete()  # they name users by primary keys that no longer exist


@dataclass
class Batch:
    kind: Kind
    lines: list[tuple[int, dict]] = field(default_factory=list)  # (line number, data)


class Importer:
    """Reads rows line by line, inserts them in batches, and keeps every problem it meets."""

    def __init__(self, head: dict, progress: Callable[[int], None]):
        self.expected = head["counts"]
        self.found = dict.fromkeys(self.expected, 0)
        self.order = {kind.name: position for position, kind in enumerate(kinds())}
        self.by_name = {kind.name: kind for kind in kinds()}
        self.progress = progress
        self.problems: list[str] = []
        self.total_problems = 0
        self.position = 0
        self.last_line = 1

    def problem(self, line: int | None, message: str) -> None:
        self.total_problems += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(f"line {line}: {message}" if line else message)

    def run(self, numbered_lines: Iterable[tuple[int, bytes]]) -> None:
        batch: Batch | None = None
        for number, raw in self._readable(numbered_lines):
            self.last_line = number
            parsed = self._parse(number, raw)
            if parsed is None:
                continue
            kind, data = parsed
            if batch is not None and (batch.kind is not kind or len(batch.lines) >= BATCH_SIZE):
                self._insert(batch)
                batch = None
            batch = batch or Batch(kind)
            batch.lines.append((number, data))
        if batch is not None:
            self._insert(batch)
        self._check_counts()

    def _readable(self, numbered_lines: Iterable[tuple[int, bytes]]):
        """The lines, until a compressed stream that breaks off (a truncated .gz file)."""
        try:
            yield from numbered_lines
        except (EOFError, OSError, zlib.error) as exc:
            self.problem(None, f"the file cannot be read after line {self.last_line}: {exc}")

    def _parse(self, number: int, raw: bytes) -> tuple[Kind, dict] | None:
        if not raw.endswith(b"\n"):
            self.problem(number, "the line is cut short (a truncated file?)")
            return None
        try:
            document = json.loads(raw)
        except ValueError as exc:
            self.problem(number, f"not JSON ({exc})")
            return None
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            self.problem(number, 'expected {"kind": …, "data": {…}}')
            return None
        kind = self.by_name.get(document.get("kind"))
        if kind is None or kind.name not in self.expected:
            self.problem(number, f"unknown kind {document.get('kind')!r}")
            return None
        if self.order[kind.name] < self.position:
            self.problem(number, f"a {kind.name} row after rows of a later kind")
            return None
        self.position = self.order[kind.name]
        self.found[kind.name] += 1
        return kind, document["data"]

    def _insert(self, batch: Batch) -> None:
        rows = self._convert(batch)
        self.progress(len(batch.lines))
        # With DEBUG on, Django keeps the last 9,000 queries' SQL: 2,000 rows' worth each.
        connection.queries_log.clear()
        if not rows:
            return
        # Inserted even after a problem (the whole import is rolled back then): later rows
        # that name these ones are checked against them, and only their own faults reported.
        try:
            with transaction.atomic():
                batch.kind.insert([obj for _, obj, _ in rows], [row for _, _, row in rows])
        except (DatabaseError, BadRow):
            self._insert_one_by_one(batch.kind, rows)

    def _insert_one_by_one(self, kind: Kind, rows: list) -> None:
        """A batch failed: find its bad lines (each row in a savepoint of its own)."""
        for number, obj, row in rows:
            try:
                with transaction.atomic():
                    kind.insert([obj], [row])
            except (DatabaseError, BadRow) as exc:
                self.problem(number, f"{kind.name} not stored: {_first_line(exc)}")
                if self.total_problems >= MAX_REPORTED:
                    return

    def _convert(self, batch: Batch) -> list[tuple[int, models.Model, dict]]:
        kind = batch.kind
        converted = []
        for number, data in batch.lines:
            try:
                converted.append((number, *_to_python(kind, data)))
            except BadRow as exc:
                self.problem(number, f"{kind.name}: {exc}")
        return self._resolve(kind, converted)

    def _resolve(self, kind: Kind, rows: list) -> list[tuple[int, models.Model, dict]]:
        """Natural keys to primary keys, one query per reference and batch."""
        resolved = []
        found = {
            name: key.resolve({refs[name] for _, _, refs, _ in rows})
            for name, key in kind.references.items()
        }
        for number, values, refs, extras in rows:
            missing = [name for name in kind.references if refs[name] not in found[name]]
            if missing:
                names = ", ".join(f"{name} {refs[name]!r}" for name in missing)
                self.problem(number, f"{kind.name}: no {names} earlier in the file")
                continue
            ids = {f"{name}_id": found[name][refs[name]] for name in kind.references}
            resolved.append((number, kind.model(**values, **ids), extras))
        return resolved

    def _check_counts(self) -> None:
        for name, expected in self.expected.items():
            found = self.found.get(name, 0)
            if found < expected:
                self.problem(
                    None,
                    f"the file ends at line {self.last_line} with {found} of the header's "
                    f"{expected} {name} rows: a truncated file?",
                )
            elif found > expected:
                self.problem(None, f"{found} {name} rows, the header says {expected}")


def _to_python(kind: Kind, data: dict) -> tuple[dict, dict, dict]:
    """A row's values for the model, its natural-key references, and its extras."""
    fields = {f.name: f for f in kind.plain_fields()}
    unknown = data.keys() - fields.keys() - kind.references.keys() - set(kind.extra_names())
    if unknown:
        raise BadRow(f"unknown field(s) {sorted(unknown)} (exported by a newer version?)")
    values = {}
    for name, model_field in fields.items():
        if name in data:
            values[model_field.attname] = _field_value(model_field, data[name])
        elif getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False):
            values[model_field.attname] = timezone.now()
    refs = {}
    for name, key in kind.references.items():
        if name not in data:
            raise BadRow(f"{name} missing")
        refs[name] = key.decode(data[name])
    extras = {name: _text_list(name, data.get(name, [])) for name in kind.extra_names()}
    return values, refs, extras


def _field_value(model_field: models.Field, value: Any) -> Any:
    try:
        value = model_field.to_python(value)
    except (ValidationError, TypeError, ValueError) as exc:
        raise BadRow(f"{model_field.name}: {_first_line(exc)}") from None
    if value is None and not model_field.null:
        raise BadRow(f"{model_field.name} may not be null")
    return value


def _text_list(name: str, value: Any) -> list[str]:
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise BadRow(f"{name} must be a list of names")
    return value


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextmanager
def stored_timestamps(selected: list[Kind]):
    """Insert ``auto_now``/``auto_now_add`` fields as the file has them, not as now."""
    stamped = [
        f
        for kind in selected
        for f in kind.model._meta.concrete_fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    saved = [(f, f.auto_now, f.auto_now_add) for f in stamped]
    for f in stamped:
        f.auto_now = f.auto_now_add = False
    try:
        yield
    finally:
        for f, auto_now, auto_now_add in saved:
            f.auto_now, f.auto_now_add = auto_now, auto_now_add


def import_catalogue(
    lines: Iterator[bytes],
    *,
    progress: Callable[[dict], Callable[[int], None]] = lambda counts: lambda n: None,
    replace: bool = False,
) -> dict[str, int]:
    """Restore an export into this (empty) catalogue, all or nothing; rows per kind.
    ``replace`` deletes the catalogue there is first, in the same transaction."""
    try:
        first = next(lines, b"")
    except (EOFError, OSError, zlib.error) as exc:
        raise ImportRefused(f"cannot read the file's first line: {exc}") from None
    head = read_header(first)
    unknown = head["counts"].keys() - {kind.name for kind in kinds()}
    if unknown:
        raise ImportRefused(f"the file holds kinds this version does not know: {sorted(unknown)}")
    selected = [kind for kind in kinds() if kind.name in head["counts"]]
    with transaction.atomic():
        if replace:
            clear_catalogue()
        refuse_unless_empty(kinds())
        importer = Importer(head, progress(head["counts"]))
        with stored_timestamps(selected):
            importer.run(enumerate(lines, start=2))
        if importer.total_problems:
            raise ImportFailed(importer.problems, importer.total_problems)
        _reset_sequences(selected)
    return importer.found


def _reset_sequences(selected: list[Kind]) -> None:
    """Papers keep their numbers: the next new paper must be numbered after them."""
    statements = connection.ops.sequence_reset_sql(no_style(), [k.model for k in selected])
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
