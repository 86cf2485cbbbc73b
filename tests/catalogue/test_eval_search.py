"""``eval_search``: its core scores the baseline and the API on the current database."""

import json

import pytest
from django.core.management import call_command

from ingest.runner import create_run, execute_run
from tests.bench import evaluation
from tests.bench.commands import command, eval_search
from tests.bench.evaluation import KNOWN, LEXICAL
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.django_db

DAILY = DATA_DIR / "formats/hf_daily_papers/daily"
FILES = [DAILY / "2026-08-19.json", DAILY / "2026-08-20.json"]


@pytest.fixture
def papers():
    for path in FILES:
        execute_run(create_run(str(path)))
    return evaluation.read_daily(FILES)


def test_baseline_and_keyword_mode_score_within_bounds(papers):
    # Two days hold too few papers for the 5-14 bounds: keywords tagging 2 or more.
    sets = {
        LEXICAL: evaluation.keyword_queries(papers, 2, 14),
        KNOWN: evaluation.known_item_queries(papers, sample=4),
    }
    queries = [q for qs in sets.values() for q in qs]
    runs = eval_search.evaluate(queries, ["keyword"], default=False)
    scores = eval_search.figures(runs, sets)

    assert [run.name for run in runs] == ["baseline FTS", "api mode=keyword"]
    for system in ("baseline FTS", "api mode=keyword"):
        for name in (LEXICAL, KNOWN):
            figures = scores[system][name]
            assert figures.queries == len(sets[name])
            for value in (figures.ndcg, figures.recall, figures.mrr):
                assert 0 <= value <= 1
    assert scores["baseline FTS"][LEXICAL].recall > 0
    assert scores["baseline FTS"][KNOWN].mrr > 0


def test_the_api_is_asked_under_production_settings_too(papers, settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["papers.example.org"]  # not the in-process client's host
    queries = evaluation.known_item_queries(papers, sample=2)
    runs = eval_search.evaluate(queries, ["keyword"], default=False)
    assert runs[1].rejected is None and len(runs[1].rankings) == len(queries)


def test_command_here_prints_the_table_and_writes_json(papers, tmp_path, capsys):
    data = tmp_path / "daily"
    data.mkdir()
    for path in FILES:
        (data / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "eval.json"
    call_command(
        command("eval_search"), "--here", "--data", str(data), "--set", "known", "--limit", "6",
        "--modes", "keyword", "--json", str(out),
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "| baseline FTS |" in printed and "| api mode=keyword |" in printed
    document = json.loads(out.read_text())
    assert len(document["sets"][KNOWN]) == 6
    assert document["systems"]["baseline FTS"]["figures"][KNOWN]["queries"] == 6


class RefusingClient:
    def get(self, path, params, **headers):
        return Answer()


class Answer:
    status_code = 400

    def json(self):
        return {"errors": {"mode": ["Select a valid choice."]}}


def test_a_mode_the_api_rejects_is_not_applicable():
    run = eval_search.SystemRun("api mode=telepathy")
    query = evaluation.Query(LEXICAL, "keyword", "kv cache", frozenset({"2601.00001"}))
    eval_search._ask_api(RefusingClient(), run, query, "telepathy")
    assert run.rejected == "Select a valid choice."
    assert eval_search.figures([run], {LEXICAL: [query]}) == {run.name: {LEXICAL: None}}
