"""``manage.py export`` and ``import``: a catalogue with every kind of row goes out to a file and
comes back, field for field, into a second, freshly migrated database; bad files are refused
or reported by line, and leave nothing behind."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import psycopg
import pytest
import redis
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.db import connection, connections, models
from django.db.migrations.loader import MigrationLoader
from django_celery_beat.models import PeriodicTask
from pgvector import HalfVector

from catalogue import exchange, merging, tagging
from catalogue.dburl import url_from_settings
from catalogue.models import (
    AlertDelivery,
    Paper,
    PaperEmbedding,
    PaperTopic,
    PhrasePairs,
    PhrasePending,
    PopularitySnapshot,
    SavedSearch,
    Sighting,
    Topic,
)
from ingest.models import DeferredIndex, IngestRun, RejectedRecord, Source
from ingest.records import PaperRecord
from ingest.runner import create_run, execute_run
from ingest.upsert import upsert_papers
from tests.conftest import DATA_DIR, SEED, private_queue

FORMATS = DATA_DIR / "formats"
PAYLOADS = [
    (SEED, dt.date(2025, 12, 24)),
    (FORMATS / "hf_daily_papers/daily/2025-03-03.json", None),
    (FORMATS / "arxiv_api/xml/id_1707.08567_s0_m100_6a1afebfc6a3.xml", None),
    (FORMATS / "arxiv_rss/rss_quant-ph_2025-04-28.xml", None),
]
# Everything PostgreSQL text can hold that a listing or a reader might throw at us (not NUL,
# which PostgreSQL refuses): markup, quotes, escapes, controls, line and paragraph separators,
# bidi overrides, astral characters, combining marks.
HOSTILE = (
    '<script>alert("x")</script> \' " \\ \\n \t tab\nnewline\r\nCRLF \r CR \u2028 LS \u2029 PS '
    "\x01\x1f\x7f \u202e RTL override \u202c 𝔘𝔫𝔦 😀👩‍🔬 日本語 עברית e\u0301 \ufeff BOM "
    'javascript:alert(1) {"kind": "paper"}'
)
# Models whose rows are not exported, and why (README "Backup: export and import").
NOT_EXPORTED = {
    IngestRun: "operational log of fetches",
    RejectedRecord: "operational log of fetches",
    DeferredIndex: "the source database's indexes waiting to be built: its state, not content",
    PhrasePairs: "derived: each imported paper waits to be paired again",
    PhrasePending: "derived: every imported paper is pending",
}
# How the comparison names a row another row points at (primary keys differ between databases).
NATURAL_KEYS = {
    Paper: ("arxiv_id", "source_key"),
    User: ("username",),
    Topic: ("slug",),
    SavedSearch: ("user__username", "name"),
    PeriodicTask: ("task", "enabled", "crontab__minute", "crontab__hour", "crontab__day_of_week"),
}


# --- the catalogue --------------------------------------------------------------------------


def ingest_payloads() -> None:
    for path, listed_on in PAYLOADS:
        run = execute_run(create_run(str(path), listed_on=listed_on))
        assert run.status == IngestRun.Status.SUCCEEDED, (path, run.error)


def merge_two_listings_of_one_paper() -> Paper:
    """A Hugging Face card without an arXiv id and the arXiv entry of the same paper, merged:
    the card's source key and catalogue number become aliases."""
    title = "MoM: Linear Sequence Modeling with Mixture-of-Memories"
    card = PaperRecord(
        source="hf_page", source_key="mom-linear", title=title, abstract="Memories.", upvotes=2
    )
    entry = PaperRecord(
        source="arxiv_atom", source_key="2502.13685", arxiv_id="2502.13685", title=title
    )
    upsert_papers([card], observed_on=dt.date(2025, 12, 24))
    upsert_papers([entry], observed_on=dt.date(2025, 12, 25))
    canonical = Paper.objects.get(arxiv_id="2502.13685")
    duplicate = Paper.objects.get(source_key="hf_page:mom-linear")
    result = merging.merge(canonical, [duplicate])
    assert len(result.aliases) == 2
    return canonical


def curate(papers: list[Paper]) -> None:
    edited, hidden, featured = papers[:3]
    edited.title = "A curator's better title"
    edited.curated_fields = ["title"]
    edited.save()
    Paper.objects.filter(pk=hidden.pk).update(hidden=True)
    Paper.objects.filter(pk=featured.pk).update(featured=True, trending_score=1.0 / 3)
    Paper.objects.create(
        source_key="test:hostile",
        title=HOSTILE,
        abstract=HOSTILE * 3,
        authors=[HOSTILE, "Zoë O'Brien-Łukasiewicz", "  spaced  "],
        keywords=[HOSTILE],
        code_url="https://example.org/" + "é" * 10,
        project_url="javascript:alert(1)",  # stored as given; rendering is another module's job
        journal_ref=HOSTILE,
    )


def topics_with_pins_and_exclusions(papers: list[Paper]) -> None:
    topic = Topic.objects.create(name="Linear attention", slug="linear-attention", query=HOSTILE)
    topic.query = '"linear attention"'
    topic.save()
    tagging.retag(topic)
    other = Topic.objects.create(name=HOSTILE[:100], slug="hostile", description=HOSTILE, query="x")
    PaperTopic.objects.create(paper=papers[3], topic=other, reason=PaperTopic.Reason.PINNED)
    PaperTopic.objects.create(paper=papers[4], topic=topic, reason=PaperTopic.Reason.EXCLUDED)
    PaperTopic.objects.update_or_create(
        paper=papers[5], topic=topic, defaults={"reason": PaperTopic.Reason.PINNED}
    )
    assert PaperTopic.objects.filter(reason=PaperTopic.Reason.RULE).exists()


def popularity_history(paper: Paper) -> None:
    for day in range(1, 4):
        PopularitySnapshot.objects.create(
            paper=paper, observed_on=dt.date(2025, 1, day), upvotes=day * 7, github_stars=None
        )


def readers_and_saved_searches(papers: list[Paper]) -> None:
    alice = User.objects.create_user(
        "alice", "alice@example.org", "correct horse", first_name="Alice", last_name=HOSTILE[:150]
    )
    alice.groups.add(Group.objects.get(name="curator"))
    alice.user_permissions.add(Permission.objects.get(codename="delete_paper"))
    alice.last_login = dt.datetime(2025, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
    alice.save()
    User.objects.create_superuser("root", "root@example.org", "another secret")
    User.objects.create_user("inactive", is_active=False)
    Group.objects.create(name="editors").permissions.add(
        Permission.objects.get(codename="change_topic")
    )
    alerts = SavedSearch.objects.create(
        user=alice,
        name=HOSTILE[:200],
        query="q=%22linear+attention%22&sort=upvotes",
        last_digest_at=dt.datetime(2025, 6, 1, 6, 0, 0, 1, tzinfo=dt.UTC),
    )
    SavedSearch.objects.create(user=alice, name="quiet", query="q=decoupling", alerts=False)
    for paper in papers[:2]:
        AlertDelivery.objects.create(saved_search=alerts, paper=paper)


def a_source() -> None:
    source = Source(
        name="hf-daily",
        kind="hf_daily",
        params={"date": "yesterday", "note": HOSTILE},
        crontab="15 6 * * 1",
        enabled=False,
    )
    source.save()
    Source.objects.filter(pk=source.pk).update(validators={"https://x": {"etag": 'W/"1"'}})


def embeddings(papers: list[Paper]) -> None:
    for number, paper in enumerate(papers[:3]):
        vector = [((i * 37 + number) % 200 - 100) / 1024 for i in range(384)]  # exact in float16
        PaperEmbedding.objects.create(paper=paper, vector=vector, model="test", text_hash="0" * 32)


def build_catalogue() -> None:
    ingest_payloads()
    merge_two_listings_of_one_paper()
    papers = list(Paper.objects.order_by("pk")[:10])
    curate(papers)
    topics_with_pins_and_exclusions(papers)
    popularity_history(papers[6])
    readers_and_saved_searches(papers)
    a_source()
    embeddings(papers)


# --- a second database ----------------------------------------------------------------------


def server_url(name: str) -> str:
    return url_from_settings(connection.settings_dict, name)


def admin_execute(*statements: str) -> None:
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        for statement in statements:
            admin.execute(statement)


def manage(*args: str, database: str, stdin=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": server_url(database)}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        stdin=stdin,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def migrated_template(django_db_setup, django_db_blocker):
    """A freshly migrated database to copy: migrating once, copying per test (a second)."""
    with django_db_blocker.unblock():
        name = f"{connection.settings_dict['NAME']}_import_template"
    admin_execute(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    try:
        migrated = manage("migrate", "--no-input", "-v0", database=name)
        assert migrated.returncode == 0, migrated.stderr.decode()
        yield name
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database(migrated_template):
    name = migrated_template.removesuffix("_template")
    admin_execute(
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"',
    )
    try:
        yield name
    finally:
        if "imported" in connections:
            connections["imported"].close()
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def opened(name: str):
    """The database ``name`` as the connection alias "imported"."""
    connections.settings["imported"] = {**connection.settings_dict, "NAME": name}
    # Connected here: Django's test case refuses to open connections to aliases it was not
    # told about, but lets one already open be used.
    connections["imported"].connect()
    try:
        yield "imported"
    finally:
        connections["imported"].close()
        del connections["imported"]
        del connections.settings["imported"]


# --- comparing two catalogues ---------------------------------------------------------------


def exported_models() -> list[type[models.Model]]:
    own = [
        model
        for app in ("catalogue", "ingest")
        for model in apps.get_app_config(app).get_models()
        if model not in NOT_EXPORTED
    ]
    return [Group, User, *own]


def columns(model: type[models.Model]) -> list[str]:
    """Every concrete field (generated search vectors too), a reference as its target's
    natural key; only automatic primary keys are left out (papers keep theirs)."""
    names = []
    for field in model._meta.concrete_fields:
        if field.is_relation:
            names += [f"{field.name}__{part}" for part in NATURAL_KEYS[field.related_model]]
        elif not (isinstance(field, models.AutoField) and model is not Paper):
            names.append(field.attname)
    return names


def many_to_many(model: type[models.Model]) -> list[list[str]]:
    key = NATURAL_KEYS.get(model, ("name",))[0]
    return [
        [key, f"{field.name}__content_type__app_label", f"{field.name}__codename"]
        if field.related_model is Permission
        else [key, f"{field.name}__name"]
        for field in model._meta.many_to_many
        if field.remote_field.through._meta.auto_created
    ]


def rows(model: type[models.Model], using: str) -> list[list[tuple]]:
    """The model's rows (and its many-to-many links) as sorted tuples of plain values."""
    found = [model.objects.using(using).values_list(*columns(model))]
    found += [model.objects.using(using).values_list(*names) for names in many_to_many(model)]
    return [sorted((tuple(map(plain, row)) for row in query), key=repr) for query in found]


def plain(value):
    return value.to_list() if isinstance(value, HalfVector) else value


def export(path: Path, *args: str) -> None:
    call_command("export", str(path), "--no-progress", *args, stdout=StringIO())


def import_file(path: Path, *args: str) -> None:
    call_command("import", str(path), "--no-progress", "--no-embed", *args, stdout=StringIO())


def lines(path: Path) -> list[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        return stream.readlines()


# --- round trip -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_row_of_every_model_comes_back_field_for_field(tmp_path, empty_database):
    build_catalogue()
    exported = tmp_path / "catalogue.jsonl.gz"
    export(exported, "--with-embeddings")

    with open(exported, "rb") as stdin:  # from stdin, compressed: detected by its magic bytes
        imported = manage("import", "-", "--no-embed", database=empty_database, stdin=stdin)
    assert imported.returncode == 0, imported.stderr.decode()
    assert b"rows" in imported.stderr  # the progress bar
    assert f"paper {Paper.objects.count()}, ".encode() in imported.stdout

    with opened(empty_database) as alias:
        for model in exported_models():
            original = rows(model, "default")
            assert original[0], f"the test catalogue has no {model.__name__}: it proves nothing"
            assert rows(model, alias) == original, model.__name__
        # Sources got their beat entries back; papers are numbered after the restored ones.
        source = Source.objects.using(alias).get()
        assert source.periodic_task.enabled is False
        assert (
            PeriodicTask.objects.using(alias).filter(name__startswith="ingest source").count() == 1
        )
        # The word pairs are not in the file: the papers' trigger made each imported one
        # pending (the import COPYs them), so the worker pairs them all.
        assert set(PhrasePending.objects.using(alias).values_list("paper_id", flat=True)) == set(
            Paper.objects.values_list("pk", flat=True)
        )
        top = Paper.objects.order_by("-pk").values_list("pk", flat=True)[0]
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence('catalogue_paper', 'id'))")
            assert cursor.fetchone()[0] == top + 1


@pytest.mark.django_db
def test_re_export_of_an_import_is_byte_for_byte_the_same(tmp_path, empty_database):
    """Hostile text survives byte-exact: the second export of the imported catalogue equals
    the first, line for line (the header's timestamp aside)."""
    build_catalogue()
    first = tmp_path / "first.jsonl"
    export(first, "--with-embeddings")
    imported = manage("import", str(first), "--no-embed", "--no-progress", database=empty_database)
    assert imported.returncode == 0, imported.stderr.decode()
    second = tmp_path / "second.jsonl"
    again = manage(
        "export", str(second), "--with-embeddings", "--no-progress", database=empty_database
    )
    assert again.returncode == 0, again.stderr.decode()

    before, after = lines(first), lines(second)
    head_before, head_after = json.loads(before[0]), json.loads(after[0])
    assert head_before.pop("created_at") != head_after.pop("created_at")
    assert head_before == head_after
    assert before[1:] == after[1:]
    assert any(json.loads(line)["data"].get("title") == HOSTILE for line in after[1:])


# --- the file ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_header_names_format_schema_and_counts_and_rows_follow_in_dependency_order(tmp_path):
    build_catalogue()
    path = tmp_path / "out.jsonl"
    export(path)
    head, *body = [json.loads(line) for line in lines(path)]
    assert head["format"] == "paper-catalogue-export" and head["version"] == 1
    # The catalogue's latest migration, whichever it is (a new one must not break this test).
    (latest,) = MigrationLoader(None).graph.leaf_nodes("catalogue")
    assert head["schema"]["catalogue"] == latest[1]
    assert head["counts"]["paper"] == Paper.objects.count()
    assert head["counts"]["popularity_snapshot"] == PopularitySnapshot.objects.count()
    assert "paper_embedding" not in head["counts"]  # derived: only with --with-embeddings
    order = [kind.name for kind in exchange.kinds()]
    positions = [order.index(row["kind"]) for row in body]
    assert positions == sorted(positions)
    assert len(body) == sum(head["counts"].values())
    sighting = next(row["data"] for row in body if row["kind"] == "sighting")
    assert set(sighting["paper"]) <= {"arxiv_id", "source_key"}  # natural keys, no ids
    assert "id" not in sighting and "paper_id" not in sighting


@pytest.mark.django_db
def test_export_to_stdout(capfdbinary):
    Paper.objects.create(arxiv_id="2401.00001", title="On stdout")
    call_command("export", "-", "--no-progress")
    out = capfdbinary.readouterr().out
    head, *body = [json.loads(line) for line in out.splitlines()]
    assert head["counts"]["paper"] == 1
    assert [row["data"]["title"] for row in body if row["kind"] == "paper"] == ["On stdout"]


def test_every_model_is_exported_or_excluded_with_a_reason():
    """A model added to catalogue/ or ingest/ must be exported (or excluded on purpose), and
    every foreign key of an exported model must be written as a natural key (or skipped)."""
    by_model = {kind.model: kind for kind in exchange.kinds()}
    for model in exported_models():
        assert model in by_model, f"{model.__name__} is not exported"
    for kind in exchange.kinds():
        relations = {f.name for f in kind.model._meta.concrete_fields if f.is_relation}
        assert relations == set(kind.references) | (relations & set(kind.skip)), kind.name


# --- refusals ------------------------------------------------------------------------------


def small_export(tmp_path: Path, name: str = "small.jsonl") -> Path:
    """A file of a small catalogue, which is then emptied again (so the test database can
    take an import)."""
    ingest_payloads()
    readers_and_saved_searches(list(Paper.objects.order_by("pk")[:2]))
    path = tmp_path / name
    export(path)
    empty_the_catalogue()
    return path


def empty_the_catalogue() -> None:
    for model in (Paper, SavedSearch, User, Topic, Source):
        model.objects.all().delete()
    Group.objects.exclude(name="curator").delete()


def catalogue_is_empty() -> bool:
    return not any(m.objects.exists() for m in (Paper, Sighting, User, SavedSearch, Topic))


def with_header(path: Path, **changes) -> Path:
    head, *rest = lines(path)
    document = {**json.loads(head), **changes}
    path.write_bytes(json.dumps(document).encode() + b"\n" + b"".join(rest))
    return path


@pytest.mark.django_db
def test_a_small_export_imports_in_process(tmp_path):
    path = small_export(tmp_path)
    import_file(path)
    assert Paper.objects.count() == json.loads(lines(path)[0])["counts"]["paper"]
    assert User.objects.get(username="alice").check_password("correct horse")


@pytest.mark.django_db
@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_an_unknown_format_version_is_refused(tmp_path, version):
    path = with_header(small_export(tmp_path), version=version)
    with pytest.raises(CommandError, match=f"format version is {version!r}; this catalogue reads"):
        import_file(path)
    assert catalogue_is_empty()


@pytest.mark.django_db
def test_a_file_from_a_newer_schema_is_refused(tmp_path):
    path = with_header(small_export(tmp_path), schema={"catalogue": "0099_from_the_future"})
    with pytest.raises(CommandError, match="newer schema .migration catalogue.0099_from_the_fut"):
        import_file(path)


@pytest.mark.django_db
def test_something_else_is_not_taken_for_an_export(tmp_path):
    path = tmp_path / "listing.jsonl"
    path.write_bytes(SEED.read_bytes())
    with pytest.raises(CommandError, match="line 1 is not a catalogue export's header"):
        import_file(path)


@pytest.mark.django_db
def test_a_catalogue_with_papers_or_users_is_not_overwritten(tmp_path):
    path = small_export(tmp_path)
    User.objects.create_user("someone")
    with pytest.raises(CommandError, match=r"not empty \(1 user\); import restores into an empty"):
        import_file(path)
    assert not Paper.objects.exists()
    User.objects.all().delete()
    Paper.objects.create(arxiv_id="2401.00001", title="Already here")
    with pytest.raises(CommandError, match=r"not empty \(1 paper\)"):
        import_file(path)
    assert Paper.objects.count() == 1 and not User.objects.exists()


# --- bad and truncated files: nothing half-imported ----------------------------------------


@pytest.mark.django_db
def test_a_file_cut_mid_line_is_reported_and_nothing_is_imported(tmp_path):
    path = small_export(tmp_path)
    whole = path.read_bytes()
    cut = whole[: len(whole) * 2 // 3]
    path.write_bytes(cut)
    last_line = cut.count(b"\n") + 1
    with pytest.raises(CommandError) as error:
        import_file(path)
    message = str(error.value)
    assert "nothing was imported" in message
    assert f"line {last_line}: the line is cut short (a truncated file?)" in message
    assert f"the file ends at line {last_line} with" in message
    assert catalogue_is_empty()


@pytest.mark.django_db
def test_a_file_cut_between_lines_is_reported_by_its_counts(tmp_path):
    path = small_export(tmp_path)
    kept = lines(path)[:-3]
    path.write_bytes(b"".join(kept))
    with pytest.raises(
        CommandError, match=f"the file ends at line {len(kept)} with .* a truncated"
    ):
        import_file(path)
    assert catalogue_is_empty()


@pytest.mark.django_db
def test_a_truncated_compressed_file_is_reported_and_nothing_is_imported(tmp_path):
    path = small_export(tmp_path, "small.jsonl.gz")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CommandError, match="(?s)nothing was imported.*cannot be read after line"):
        import_file(path)
    assert catalogue_is_empty()


@pytest.mark.django_db
def test_every_bad_line_is_reported_with_its_number_and_nothing_is_imported(tmp_path):
    path = small_export(tmp_path)
    body = lines(path)
    numbered = {number: json.loads(line) for number, line in enumerate(body, start=1)}
    paper_line = next(n for n, row in numbered.items() if row.get("kind") == "paper")
    sighting_line = next(n for n, row in numbered.items() if row.get("kind") == "sighting")
    user_line = next(n for n, row in numbered.items() if row.get("kind") == "user")
    numbered[paper_line]["data"]["published_on"] = "2025-02-30"
    numbered[paper_line + 1]["data"]["colour"] = "blue"
    numbered[sighting_line]["data"]["paper"] = {"arxiv_id": "9999.99999"}
    numbered[user_line]["data"]["group_names"] = ["no such group"]
    body = [json.dumps(row).encode() + b"\n" for row in numbered.values()]
    body[paper_line + 2] = b"{not json\n"
    path.write_bytes(b"".join(body))

    with pytest.raises(CommandError) as error:
        import_file(path)
    message = str(error.value)
    assert f"line {paper_line}: paper: published_on: " in message
    assert f"line {paper_line + 1}: paper: unknown field(s) ['colour']" in message
    assert f"line {paper_line + 3}: not JSON" in message
    assert f"line {sighting_line}: sighting: no paper ('arxiv_id', '9999.99999')" in message
    assert f"line {user_line}: user not stored: no group named ['no such group']" in message
    assert catalogue_is_empty()


@pytest.mark.django_db
def test_a_value_the_database_refuses_is_reported_by_line(tmp_path):
    path = small_export(tmp_path)
    body = [json.loads(line) for line in lines(path)]
    number, row = next((n, r) for n, r in enumerate(body[1:], start=2) if r["kind"] == "paper")
    row["data"]["primary_category"] = "x" * 41  # max_length 40
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in body))
    with pytest.raises(CommandError, match=f"line {number}: paper not stored: value too long"):
        import_file(path)
    assert catalogue_is_empty()


# --- --replace ------------------------------------------------------------------------------


def another_catalogue() -> None:
    Paper.objects.create(arxiv_id="2401.00001", title="Not in the file")
    someone = User.objects.create_user("someone")
    SavedSearch.objects.create(user=someone, name="mine", query="q=x")
    Topic.objects.create(name="Other", slug="other", query="other")
    a_source()
    Session.objects.create(
        session_key="k" * 32, session_data="", expire_date=dt.datetime.now(dt.UTC)
    )


@pytest.mark.django_db
def test_replace_deletes_the_catalogue_there_was_unless_the_file_is_bad(tmp_path):
    path = small_export(tmp_path)
    another_catalogue()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines(path)[:-1]))
    with pytest.raises(CommandError, match="a truncated file"):
        import_file(bad, "--replace")
    assert Paper.objects.filter(arxiv_id="2401.00001").exists() and Source.objects.exists()

    import_file(path, "--replace")
    again = tmp_path / "again.jsonl"
    export(again)
    assert lines(again)[1:] == lines(path)[1:]
    assert not Session.objects.exists()
    assert not PeriodicTask.objects.filter(name__startswith="ingest source").exists()


# --- after the import ----------------------------------------------------------------------


@pytest.mark.django_db
def test_import_queues_embeddings_for_the_papers_without_one(tmp_path):
    path = small_export(tmp_path)
    out = StringIO()
    broker = redis.Redis.from_url(settings.REDIS_URL)
    with private_queue() as queue:
        try:
            call_command("import", str(path), "--no-progress", stdout=out)
            queued = sum(broker.llen(key) for key in broker.scan_iter(f"{queue}*"))
        finally:
            for key in broker.scan_iter(f"*{queue}*"):  # the backfill's keys too
                broker.delete(key)
    assert queued == 1  # one plan_embedding task, which sends the backfill's chains
    assert (
        f"{Paper.objects.count()} papers lack embeddings: queued on the worker." in out.getvalue()
    )
