"""Stand-in embeddings: every paper of a bench catalogue too large to embed gets a vector.

The model embeds 13-15 abstracts a second on these machines: 100,000 papers would take two
hours, a million a day. Without embeddings a hybrid search's nearest-neighbour scan finds
nothing at once, and the benchmark would measure a search cheaper than the one readers get.
So each paper gets a stand-in: the model's embeddings of the corpus's commonest words (one
batch pass, a minute or so), averaged over the paper's words (its title's counted twice), at
unit length. Papers sharing words lie near each other, as they do under the model, so the HNSW
index has the same size and a realistic neighbourhood structure, and a filtered scan walks as
far as a real one. The vectors are marked ``STANDIN_MODEL`` (never the real model's id): the
backfill (``manage.py embed``) would treat them as stale and replace them.
"""

from __future__ import annotations

import io
import re
import time
from collections import Counter
from collections.abc import Iterable

import numpy as np
import psycopg

STANDIN_MODEL = "bench-standin:word-means"
WORDS = 20_000  # the commonest words embedded; the rest of a paper's words are left out
TITLE_WEIGHT = 2.0
_WORD = re.compile(r"[0-9]*[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # with a letter: not "2023"
_BATCH = 2_000  # papers per COPY batch
_INDEX = "embedding_hnsw"


def words_of(text: str) -> list[str]:
    """The lowercase words of ``text`` that hold a letter (hyphenated ones whole)."""
    return _WORD.findall(text.lower())


def commonest_words(texts: Iterable[str], limit: int = WORDS) -> list[str]:
    """The ``limit`` words in most of ``texts`` (document frequency), commonest first."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(set(words_of(text)))
    return [word for word, _ in counts.most_common(limit)]


def paper_vector(
    title: str, abstract: str, index: dict[str, int], vectors: np.ndarray
) -> np.ndarray | None:
    """The unit mean of the known words' vectors (title words weigh ``TITLE_WEIGHT``); None
    when no word is known. Pure."""
    weights: Counter[int] = Counter()
    for weight, text in ((TITLE_WEIGHT, title), (1.0, abstract)):
        for word in words_of(text):
            row = index.get(word)
            if row is not None:
                weights[row] += weight
    if not weights:
        return None
    rows = np.fromiter(weights.keys(), dtype=np.int64)
    mean = np.asarray(list(weights.values()), dtype=np.float32) @ vectors[rows]
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else None


def fill(database_url: str, embed, words: int = WORDS) -> dict:
    """Give every paper without an embedding a stand-in (``embed``: texts to unit vectors,
    e.g. the model's ``Embedder.embed``; ``words``: how many of the commonest words it
    embeds), the HNSW index rebuilt once after them. Returns papers, words, and seconds of
    each step (``word_seconds``: counting and embedding the words, ``count_seconds`` of them
    counting)."""
    started = time.perf_counter()
    # Rows are read through server-side cursors (in a transaction of their own) and written
    # on a second connection.
    with (
        psycopg.connect(database_url) as reader,
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        vocabulary = commonest_words(_texts(reader), words)
        counted_at = time.perf_counter()
        vectors = embed(vocabulary)
        index = {word: row for row, word in enumerate(vocabulary)}
        embedded_at = time.perf_counter()
        definitions = _drop_indexes(conn)
        papers = _copy_vectors(reader, conn, index, vectors)
        copied_at = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '2GB'")
        for definition in definitions:
            conn.execute(definition)
        conn.execute("VACUUM ANALYZE catalogue_paperembedding")
    return {
        "papers": papers,
        "words": len(vocabulary),
        "word_seconds": embedded_at - started,
        "count_seconds": counted_at - started,
        "copy_seconds": copied_at - embedded_at,
        "index_seconds": time.perf_counter() - copied_at,
    }


def _texts(reader):
    with reader.cursor(name="standin_texts") as cursor:
        cursor.itersize = 10_000
        cursor.execute("SELECT title || ' ' || abstract FROM catalogue_paper")
        for (text,) in cursor:
            yield text


def _drop_indexes(conn) -> list[str]:
    """Drop the HNSW indexes, the whole catalogue's and each year's (built once after the
    rows: far faster than row by row), and return how to create them again, as the
    migrations made them."""
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'catalogue_paperembedding'"
        " AND (indexname = %s OR indexname LIKE %s) ORDER BY indexname",
        [_INDEX, f"{_INDEX}\\_%"],
    ).fetchall()
    for name, _ in rows:
        conn.execute(f"DROP INDEX {name}")
    return [definition for _, definition in rows]


def _copy_vectors(reader, conn, index: dict[str, int], vectors: np.ndarray) -> int:
    papers = 0
    pending: list[tuple[int, np.ndarray]] = []
    # The embedded papers first, not an anti-join: the planner, seeing an empty table, would
    # rescan it per paper while this very COPY fills it (quadratic: 266 s for 100,000 papers).
    embedded = {pk for (pk,) in reader.execute("SELECT paper_id FROM catalogue_paperembedding")}
    with reader.cursor(name="standin_papers") as rows:
        rows.itersize = 10_000
        rows.execute("SELECT id, title, abstract FROM catalogue_paper")
        for pk, title, abstract in rows:
            if pk in embedded:
                continue
            vector = paper_vector(title, abstract, index, vectors)
            if vector is not None:
                pending.append((pk, vector))
            if len(pending) >= _BATCH:
                papers += _copy(conn, pending)
                pending = []
    return papers + _copy(conn, pending)


def _copy(conn, rows: list[tuple[int, np.ndarray]]) -> int:
    """COPY rows of (paper id, vector) in text form: a vector as '[x,y,...]'."""
    if not rows:
        return 0
    buffer = io.StringIO()
    np.savetxt(buffer, np.stack([vector for _, vector in rows]), fmt="%.5f", delimiter=",")
    lines = buffer.getvalue().splitlines()
    with conn.cursor().copy(
        "COPY catalogue_paperembedding (paper_id, vector, model, text_hash, computed_at) FROM STDIN"
    ) as copy:
        for (pk, _), line in zip(rows, lines, strict=True):
            copy.write_row((pk, f"[{line}]", STANDIN_MODEL, "", "now"))
    return len(rows)
