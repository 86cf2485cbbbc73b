"""Each source's ``fetch_pages`` against a real HTTP server on 127.0.0.1 (no mocked httpx).

The server answers like the real APIs from their recorded payloads, served unchanged: HF daily
slices a recorded day by ``p``/``limit``, the arXiv API maps ``start``/``max_results`` to the
recorded ``q_testing_s{start}_m{max}`` pages, OAI-PMH answers a first request with a real
arXivRaw page (which carries a resumptionToken) and the token request with a last page. Faults
(429, 500) are injected per request so retries are exercised mid-paging.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from ingest.http import Fetcher, PermanentFetchError, TransientFetchError
from ingest.records import Deleted, Page, PaperRecord, Rejected
from ingest.sources import arxiv_atom, arxiv_rss, arxiv_snapshot, hf_daily, hf_page, oai_pmh

DATA = Path(__file__).parent.parent / "data"
FORMATS = DATA / "formats"
DAILY = FORMATS / "hf_daily_papers" / "daily"
ATOM_PAGES = FORMATS / "arxiv_api" / "xml"
OAI_FIRST = (
    FORMATS
    / "arxiv_oai_pmh"
    / "arXivRaw_ListRecords_2014-01-16_scirate_resumption-496549-96001.xml"
)
OAI_LAST = FORMATS / "arxiv_oai_pmh" / "arXiv_hepcrawl_arxiv-physics-hep-th.xml"
RSS_FEED = FORMATS / "arxiv_rss" / "rss_quant-ph_2025-04-28.xml"
RSS_EMPTY = FORMATS / "arxiv_rss" / "rss_physics_2025-12-31_EMPTY_holiday.xml"
SNAPSHOT = FORMATS / "kaggle_arxiv_snapshot" / "arxiv-metadata-oai-snapshot_head200.jsonl"
SEED = DATA / "seed" / "hf-papers-search-listing.txt"


# --- the emulated APIs -------------------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: Message


@dataclass
class Fault:
    """Give ``answer`` to requests for ``path`` whose query includes ``where``, ``times`` times."""

    path: str
    where: dict[str, str]
    answer: Answer
    times: float = 1

    def applies(self, request: Request) -> bool:
        wanted = self.where.items() <= request.query.items()
        return self.times > 0 and request.path == self.path and wanted


class FakeApis:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.port = 0
        self._lock = threading.Lock()
        self._routes = {
            "/api/daily_papers": self.hf_daily,
            "/api/query": self.arxiv_api,
            "/oai": self.oai_pmh,
            "/rss/quant-ph": lambda request: self.static(request, RSS_FEED, '"quant-ph-0428"'),
            "/rss/physics": lambda request: self.static(request, RSS_EMPTY, '"physics-1231"'),
            "/snapshot.jsonl": lambda request: self.static(request, SNAPSHOT, '"snap-v5"'),
            "/papers": lambda request: self.static(request, SEED, '"seed"'),
        }

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, path: str, answer: Answer, *, times: float = 1, **where: str) -> None:
        self.faults.append(Fault(path, where, answer, times))

    def hits(self, path: str) -> list[dict[str, str]]:
        return [request.query for request in self.requests if request.path == path]

    def answer(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            fault = next((f for f in self.faults if f.applies(request)), None)
            if fault:
                fault.times -= 1
                return fault.answer
        route = self._routes.get(request.path)
        return route(request) if route else Answer(404, b"no such path")

    # One method per API, answering as the real one does (per the formats README).

    def hf_daily(self, request: Request) -> Answer:
        query = request.query
        limit, page = int(query.get("limit", 50)), int(query.get("p", 0))
        if limit > 100:
            return hf_error("Too big: expected number to be <=100")
        try:
            day = dt.date.fromisoformat(query["date"])
        except (KeyError, ValueError):
            return hf_error("Invalid date")
        recorded = DAILY / f"{day}.json"
        items = json.loads(recorded.read_bytes()) if recorded.exists() else []
        body = json.dumps(items[page * limit : (page + 1) * limit], ensure_ascii=False)
        return Answer(200, body.encode(), {"Content-Type": "application/json"})

    def arxiv_api(self, request: Request) -> Answer:
        query = request.query
        if query.get("search_query") == "all:testing":
            stem = "q_testing"
        elif "id_list" in query:
            stem = "id_" + query["id_list"].replace(",", "_").replace("/", "_")
        else:
            return Answer(404, b"no recording for this query")
        files = list(ATOM_PAGES.glob(f"{stem}_s{query['start']}_m{query['max_results']}_*.xml"))
        if len(files) != 1:
            return Answer(404, b"no recording for this page")
        return Answer(200, files[0].read_bytes(), {"Content-Type": "application/atom+xml"})

    def oai_pmh(self, request: Request) -> Answer:
        page = OAI_LAST if "resumptionToken" in request.query else OAI_FIRST
        return Answer(200, page.read_bytes(), {"Content-Type": "text/xml"})

    def static(self, request: Request, path: Path, etag: str) -> Answer:
        if request.headers.get("If-None-Match") == etag:
            return Answer(304, headers={"ETag": etag})
        return Answer(200, path.read_bytes(), {"ETag": etag})


def hf_error(message: str) -> Answer:
    return Answer(
        400, json.dumps({"error": message}).encode(), {"Content-Type": "application/json"}
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: _Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        answer = self.server.apis.answer(Request(parts.path, query, self.headers))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


class _Server(ThreadingHTTPServer):
    apis: FakeApis


@pytest.fixture
def apis() -> Iterator[FakeApis]:
    fake = FakeApis()
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.apis = fake
    fake.port = httpd.server_address[1]
    # a short poll interval so shutdown() at teardown does not cost half a second per test
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.daemon = True
    thread.start()
    yield fake
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=2)


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    # No spacing and tiny backoff so retries cost milliseconds; real sleeps, real sockets.
    with Fetcher(
        min_interval=0,
        host_intervals={},
        backoff_base=0.01,
        max_attempts=3,
        connect_timeout=2,
        read_timeout=5,
        allow_private_hosts=True,  # the recorded payloads are served from 127.0.0.1
    ) as made:
        yield made


def parsed(module, pages: list[Page]) -> list:
    return [
        result for page in pages for result in module.parse(page.content, listed_on=page.listed_on)
    ]


def recorded_ids(day: str) -> list[str]:
    return [item["paper"]["id"] for item in json.loads((DAILY / f"{day}.json").read_bytes())]


# --- Hugging Face daily papers -----------------------------------------------------------------


def test_hf_daily_pages_through_a_day_and_yields_each_item_once(apis, fetcher):
    params = {"date": "2024-06-21", "limit": 10}  # 21 recorded items: pages of 10, 10, 1

    pages = list(hf_daily.fetch_pages(fetcher, apis.url("/api/daily_papers"), params))

    assert [query["p"] for query in apis.hits("/api/daily_papers")] == ["0", "1", "2"]
    assert {query["limit"] for query in apis.hits("/api/daily_papers")} == {"10"}
    assert [page.listed_on for page in pages] == [dt.date(2024, 6, 21)] * 3
    records = parsed(hf_daily, pages)
    assert all(isinstance(record, PaperRecord) for record in records)
    assert [record.arxiv_id for record in records] == recorded_ids("2024-06-21")


def test_hf_daily_full_last_page_is_confirmed_by_an_empty_one(apis, fetcher):
    params = {"date": "2025-05-19", "limit": "3"}  # 9 items: 3 full pages, then []

    pages = list(hf_daily.fetch_pages(fetcher, apis.url("/api/daily_papers"), params))

    assert len(pages) == 3
    assert [query["p"] for query in apis.hits("/api/daily_papers")] == ["0", "1", "2", "3"]
    assert len(parsed(hf_daily, pages)) == 9


def test_hf_daily_yesterday_is_counted_from_today(apis, fetcher):
    params = {"date": "yesterday"}
    today = dt.date(2025, 3, 15)

    pages = list(hf_daily.fetch_pages(fetcher, apis.url("/api/daily_papers"), params, today=today))

    assert apis.hits("/api/daily_papers") == [{"date": "2025-03-14", "p": "0", "limit": "50"}]
    assert [page.listed_on for page in pages] == [dt.date(2025, 3, 14)]
    assert len(parsed(hf_daily, pages)) == 26


def test_hf_daily_empty_day_yields_no_page(apis, fetcher):
    url = apis.url("/api/daily_papers")
    pages = list(hf_daily.fetch_pages(fetcher, url, {"date": "today"}, today=dt.date(2020, 1, 1)))

    assert pages == []
    assert len(apis.hits("/api/daily_papers")) == 1


def test_too_many_requests_mid_paging_is_waited_out_and_the_day_completes(apis, fetcher):
    apis.fail("/api/daily_papers", Answer(429, headers={"Retry-After": "0"}), p="1")
    params = {"date": "2024-06-21", "limit": 10}

    pages = list(hf_daily.fetch_pages(fetcher, apis.url("/api/daily_papers"), params))

    assert [query["p"] for query in apis.hits("/api/daily_papers")] == ["0", "1", "1", "2"]
    records = parsed(hf_daily, pages)
    assert [record.arxiv_id for record in records] == recorded_ids("2024-06-21")


def test_not_found_fails_permanently_after_one_request(apis, fetcher):
    pages = hf_daily.fetch_pages(fetcher, apis.url("/api/nowhere"), {"date": "2024-06-21"})

    with pytest.raises(PermanentFetchError) as failure:
        list(pages)

    assert failure.value.status == 404
    assert len(apis.requests) == 1


# --- arXiv search API (Atom) -------------------------------------------------------------------


def test_arxiv_api_pages_by_start_up_to_max_total(apis, fetcher):
    params = {"search_query": "all:testing", "page_size": 10, "max_total": 60}

    pages = list(arxiv_atom.fetch_pages(fetcher, apis.url("/api/query"), params))

    hits = apis.hits("/api/query")
    assert [(query["start"], query["max_results"]) for query in hits] == [
        (str(start), "10") for start in range(0, 60, 10)
    ]
    assert {page.expected for page in pages} == {60}  # totalResults is 214,881
    records = parsed(arxiv_atom, pages)
    assert len(records) == 60
    # The recorded pages are consecutive slices of one ranking: no paper appears twice.
    assert len({record.arxiv_id for record in records}) == 60


def test_arxiv_api_sorting_params_are_sent(apis, fetcher):
    params = {"search_query": "all:testing", "sortBy": "relevance", "sortOrder": "descending"}
    params |= {"page_size": 10, "max_total": 10}

    pages = list(arxiv_atom.fetch_pages(fetcher, apis.url("/api/query"), params))

    assert len(pages) == 1
    assert apis.hits("/api/query") == [
        {
            "search_query": "all:testing",
            "sortBy": "relevance",
            "sortOrder": "descending",
            "start": "0",
            "max_results": "10",
        }
    ]


def test_arxiv_api_stops_once_total_results_are_in(apis, fetcher):
    pages = list(arxiv_atom.fetch_pages(fetcher, apis.url("/api/query"), {"id_list": "1605.08386"}))

    assert len(apis.hits("/api/query")) == 1
    assert [page.expected for page in pages] == [1]
    assert [record.arxiv_id for record in parsed(arxiv_atom, pages)] == ["1605.08386"]


def test_arxiv_api_page_without_entries_ends_the_listing(apis, fetcher):
    pages = list(arxiv_atom.fetch_pages(fetcher, apis.url("/api/query"), {"id_list": "0000.0000"}))

    assert pages == []
    assert len(apis.hits("/api/query")) == 1


def test_persistent_server_error_mid_paging_raises_transient_error(apis, fetcher):
    apis.fail("/api/query", Answer(500), times=math.inf, start="10")
    params = {"search_query": "all:testing", "page_size": 10, "max_total": 60}
    pages = arxiv_atom.fetch_pages(fetcher, apis.url("/api/query"), params)

    first = next(pages)
    with pytest.raises(TransientFetchError) as failure:
        next(pages)

    assert len(parsed(arxiv_atom, [first])) == 10  # what came before the failure is usable
    assert failure.value.status == 500
    assert failure.value.attempts == fetcher.max_attempts
    assert [query["start"] for query in apis.hits("/api/query")] == ["0", "10", "10", "10"]


# --- arXiv OAI-PMH -----------------------------------------------------------------------------


def test_oai_pmh_follows_the_resumption_token_with_nothing_but_the_verb(apis, fetcher):
    params = {"metadataPrefix": "arXivRaw", "set": "physics", "from": "2014-01-15"}

    pages = list(oai_pmh.fetch_pages(fetcher, apis.url("/oai"), params))

    first, second = apis.hits("/oai")
    assert first == {
        "verb": "ListRecords",
        "metadataPrefix": "arXivRaw",
        "set": "physics",
        "from": "2014-01-15",
    }
    assert second == {"verb": "ListRecords", "resumptionToken": "496549|96001"}
    # The legacy service states the list size on the first page; it carries over for progress.
    assert [page.expected for page in pages] == [907096, 907096]
    counts = [Counter(type(result) for result in parsed(oai_pmh, [page])) for page in pages]
    assert counts == [Counter({PaperRecord: 1000}), Counter({PaperRecord: 3})]


def test_oai_pmh_relative_window_and_default_prefix(apis, fetcher):
    params = {"from": "yesterday", "until": "today"}
    today = dt.date(2014, 1, 16)

    list(oai_pmh.fetch_pages(fetcher, apis.url("/oai"), params, today=today))

    assert apis.hits("/oai")[0] == {
        "verb": "ListRecords",
        "metadataPrefix": "arXivRaw",
        "from": "2014-01-15",
        "until": "2014-01-16",
    }


# --- arXiv RSS, the snapshot, a HF listing page ------------------------------------------------


def test_rss_feed_is_one_page_then_nothing_while_unchanged(apis, fetcher):
    url = apis.url("/rss/quant-ph")

    pages = list(arxiv_rss.fetch_pages(fetcher, url, {}))
    again = list(arxiv_rss.fetch_pages(fetcher, url, {}))

    assert len(parsed(arxiv_rss, pages)) == 81
    assert again == []
    second = apis.requests[1]
    assert second.headers.get("If-None-Match") == '"quant-ph-0428"'


def test_rss_empty_holiday_feed_is_a_page_without_records(apis, fetcher):
    pages = list(arxiv_rss.fetch_pages(fetcher, apis.url("/rss/physics"), {}))

    assert len(pages) == 1
    assert parsed(arxiv_rss, pages) == []


def test_snapshot_download_yields_a_file_with_identical_bytes(apis, fetcher):
    [page] = arxiv_snapshot.fetch_pages(fetcher, apis.url("/snapshot.jsonl"), {})
    try:
        assert page.content == b""
        assert page.path.read_bytes() == SNAPSHOT.read_bytes()
        with page.path.open("rb") as stream:
            assert len(list(arxiv_snapshot.parse(stream))) == 200
    finally:
        page.path.unlink()


def test_unchanged_snapshot_is_not_downloaded_again(apis, fetcher):
    for page in arxiv_snapshot.fetch_pages(fetcher, apis.url("/snapshot.jsonl"), {}):
        page.path.unlink()

    again = list(arxiv_snapshot.fetch_pages(fetcher, apis.url("/snapshot.jsonl"), {}))

    assert again == []
    assert len(apis.requests) == 2


def test_hf_listing_page_is_dated_today(apis, fetcher):
    today = dt.date(2025, 1, 10)

    pages = list(hf_page.fetch_pages(fetcher, apis.url("/papers"), {}, today=today))

    assert [page.listed_on for page in pages] == [today]
    records = parsed(hf_page, pages)
    assert len(records) == 49
    assert not [record for record in records if isinstance(record, Rejected | Deleted)]


# --- params an admin typed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "url", "params", "message"),
    [
        (hf_daily, None, {}, "needs a date"),
        (hf_daily, None, {"date": "2025-13-40"}, "date must be a date"),
        (hf_daily, None, {"date": "tomorrow"}, "date must be a date"),
        (hf_daily, None, {"date": 20250314}, "date must be a non-empty string"),
        (hf_daily, None, {"date": "today", "limit": 101}, "limit must be a whole number"),
        (hf_daily, None, {"date": "today", "limit": 0}, "limit must be a whole number"),
        (hf_daily, None, {"date": "today", "limit": True}, "limit must be a whole number"),
        (hf_daily, None, {"date": "today", "page": 2}, "unknown hf_daily param 'page'"),
        (arxiv_atom, None, {}, "needs a search_query or an id_list"),
        (arxiv_atom, None, {"search_query": "  "}, "search_query must be a non-empty"),
        (arxiv_atom, None, {"search_query": "x", "sortBy": "date"}, "sortBy must be one of"),
        (arxiv_atom, None, {"id_list": "x", "sortOrder": "up"}, "sortOrder must be one of"),
        (arxiv_atom, None, {"search_query": "x", "page_size": 2001}, "page_size must be"),
        (arxiv_atom, None, {"search_query": "x", "max_total": 30001}, "max_total must be"),
        (arxiv_atom, None, {"search_query": "x", "start": 0}, "unknown arxiv_atom param"),
        (oai_pmh, None, {"metadataPrefix": "oai_dc"}, "metadataPrefix must be one of"),
        (oai_pmh, None, {"from": "2025-02-30"}, "from must be a date"),
        (oai_pmh, None, {"from": "today", "until": "yesterday"}, "is after until"),
        (oai_pmh, None, {"resumptionToken": "x"}, "unknown arxiv_oai param"),
        (arxiv_rss, None, {"category": "machine learning"}, "category must be arXiv categories"),
        (arxiv_rss, "https://rss.arxiv.org/rss/cs.AI", {"category": "cs.LG"}, "not both"),
        (arxiv_rss, None, {"feed": "cs.LG"}, "unknown arxiv_rss param"),
        (arxiv_snapshot, None, {}, "needs a url"),
        (arxiv_snapshot, "https://example.org/s.jsonl", {"gzip": 1}, "accepted: none"),
        (hf_page, None, {}, "needs a url"),
        (hf_daily, None, ["date"], "params must be an object"),
        (hf_daily, None, {"date": "today", "limit": "²"}, "limit must be a whole number"),
    ],
)
def test_bad_params_are_refused_before_any_request(apis, fetcher, module, url, params, message):
    with pytest.raises(ValueError, match=message):
        module.fetch_pages(fetcher, url, params)  # raises on the call, not on iteration

    assert apis.requests == []


def test_valid_params_send_nothing_until_iterated(apis, fetcher):
    url = apis.url("/api/daily_papers")
    pages = hf_daily.fetch_pages(fetcher, url, {"date": "today"}, today=dt.date(2020, 1, 1))

    assert apis.requests == []
    assert list(pages) == []
    assert len(apis.requests) == 1


def test_every_listing_module_has_a_default_url():
    assert hf_daily.DEFAULT_URL == "https://huggingface.co/api/daily_papers"
    assert arxiv_atom.DEFAULT_URL == "https://export.arxiv.org/api/query"
    assert oai_pmh.DEFAULT_URL == "https://oaipmh.arxiv.org/oai"
    assert arxiv_rss.DEFAULT_URL == "https://rss.arxiv.org/rss/cs.LG"
    assert arxiv_snapshot.DEFAULT_URL is None  # these two need the Source's own url
    assert hf_page.DEFAULT_URL is None
