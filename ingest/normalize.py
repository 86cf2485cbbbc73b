"""Normalisation shared by every parser: arXiv ids, titles, author names, links, dates.

Pure functions, no Django: parsers call these so that every source agrees on what a paper's
id, title and code link look like.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import urllib.parse

# New-style ids (0704.0001 … 2412.12345) and old-style ids (hep-th/9901001, math.GT/0309136),
# each optionally versioned (v2) and optionally prefixed ("arXiv:", an abs/pdf URL, OAI id).
_NEW_ID = r"\d{4}\.\d{4,5}"
_OLD_ID = r"[a-z][a-z\-]+(?:\.[A-Z]{2})?/\d{7}"
ARXIV_ID_RE = re.compile(rf"(?P<id>{_NEW_ID}|{_OLD_ID})(?:v(?P<version>\d+))?")
_ID_PREFIXES = re.compile(
    r"^(?:https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/|oai:arXiv\.org:|arxiv:)",
    re.IGNORECASE,
)


def split_arxiv_id(raw: str) -> tuple[str, int | None] | None:
    """``"arXiv:2401.01234v3"`` -> ``("2401.01234", 3)``; None when it is not an arXiv id."""
    text = _ID_PREFIXES.sub("", raw.strip()).removesuffix(".pdf")
    match = ARXIV_ID_RE.fullmatch(text)
    if not match:
        return None
    version = match.group("version")
    return match.group("id"), int(version) if version else None


def versionless_arxiv_id(raw: str) -> str | None:
    """The versionless id, or None when ``raw`` is not an arXiv id."""
    parts = split_arxiv_id(raw)
    return parts[0] if parts else None


# Archive names (hep-th, q-bio, physics), optionally with a subject class (cs.LG, math.GT,
# astro-ph.CO, cond-mat.stat-mech, physics.atom-ph). MSC ("03B70, 68Q99") and ACM
# ("F.4.1; F.4.m; K.2") strings that arXiv also emits as <category> never match.
_CATEGORY_RE = re.compile(r"[a-z]+(?:-[a-z]+)*(?:\.[A-Za-z]+(?:-[a-z]+)*)?")


def is_arxiv_category(term: str) -> bool:
    """True for a real arXiv category term such as ``cs.LG``, ``hep-th`` or ``math.GT``."""
    return bool(_CATEGORY_RE.fullmatch(term or ""))


# --- dates -------------------------------------------------------------------------------


def parse_datetime(text: str | None) -> dt.datetime | None:
    """An ISO-8601 timestamp (``2024-05-27T03:50:58.348Z``, ``…-04:00``, a bare date) or None."""
    if not text or not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def parse_date(text: str | None) -> dt.date | None:
    """The calendar date of an ISO-8601 timestamp *as written* (no timezone shift), else None.

    As written, because the sources already give the date they mean: arXiv's ``published`` is
    UTC, HF's ``submittedOnDailyAt`` is midnight of the listing day, and the legacy Atom feed's
    ``-04:00`` stamps are arXiv's local dates. Converting would move some of them a day.
    """
    moment = parse_datetime(text)
    return moment.date() if moment else None


# --- whitespace and LaTeX ----------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    """Hard wraps and runs of spaces become single spaces."""
    return " ".join((text or "").split())  # faster than a regex, same result


# Only text with one of these goes through pylatexenc: it is slow (~0.2 ms a title) and
# plain titles ("Consistency^2: …", "R&B: …", "Over 90% of …") must come out untouched.
_LATEX_HINT = re.compile(r"[\\${}]")

# Hugging Face strips backslashes from paper titles, leaving "texttt{D}ual-texttt{H}ead".
_BARE_MACRO = re.compile(
    r"(?<![\\A-Za-z])(textbf|textit|texttt|textsc|textrm|textsf|emph|mathrm|mathbf|mathcal|mathbb)\{"
)
# "\\$15" and "\\%" are escaping accidents for "\$15" and "\%", not LaTeX line breaks.
_DOUBLED_ESCAPE = re.compile(r"\\\\(?=[$%&#_])")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
# Characters LaTeX treats specially but titles use literally: 50%, R&B, #1, "~100x faster".
_LITERAL_SPECIALS = re.compile(r"(?<!\\)([%&#])|(?:(?<=\s)|^)~(?=\d)")


def split_math(text: str) -> list[tuple[bool, str]]:
    """Cut ``text`` into ``(is_math, piece)`` segments; math pieces keep their ``$`` delimiters.

    A ``$`` opens math only when a matching ``$`` closes a span that looks like math: no space
    just inside the dollars, and either a TeX character (``\\ ^ _ { } =``), a non-digit start
    (``$k$``, ``$\\omega$``) or a bare number (``$2$``). So ``$200k``, ``1$: Cheap``,
    ``between $5 and $10`` and ``$5-$10`` stay money.
    """
    dollars = [m.start() for m in _UNESCAPED_DOLLAR.finditer(text)]
    segments: list[tuple[bool, str]] = []
    done = 0  # text[:done] is already in segments
    i = 0
    while i < len(dollars) - 1:
        start, end = dollars[i], dollars[i + 1]
        if _looks_like_math(text[start + 1 : end]):
            if start > done:
                segments.append((False, text[done:start]))
            segments.append((True, text[start : end + 1]))
            done = end + 1
            i += 2
        else:
            i += 1
    if done < len(text):
        segments.append((False, text[done:]))
    return segments


def _looks_like_math(inner: str) -> bool:
    if not inner or inner[0].isspace() or inner[-1].isspace():
        return False
    return bool(re.search(r"[\\^_{}=]", inner)) or not inner[0].isdigit() or inner.isdigit()


def _escape_literals(text: str) -> str:
    """Escape what LaTeX would eat in the non-math parts: %, &, #, a leading ~, money $."""
    pieces = []
    for is_math, piece in split_math(text):
        if not is_math:
            piece = _LITERAL_SPECIALS.sub(_escape_special, piece)
            piece = _UNESCAPED_DOLLAR.sub(r"\\$", piece)
        pieces.append(piece)
    return "".join(pieces)


def _escape_special(match: re.Match) -> str:
    return "\\" + match.group(1) if match.group(1) else r"\textasciitilde{}"


# Font, size and spacing switches pylatexenc has no text rule for: they render as nothing
# (their arguments, if any, as themselves) instead of as their name.
# fmt: off
_FORMATTING_MACROS = (
    # font switches and declarations
    "bf", "it", "rm", "sc", "tt", "sf", "sl", "em", "up", "md", "normalfont", "boldmath",
    "unboldmath", "bfseries", "itshape", "mdseries", "rmfamily", "scshape", "sffamily",
    "ttfamily", "upshape", "slshape",
    # sizes and math styles
    "tiny", "scriptsize", "footnotesize", "small", "normalsize", "large", "Large", "LARGE",
    "huge", "Huge", "displaystyle", "textstyle", "scriptstyle", "scriptscriptstyle",
    # delimiter sizing and layout
    "left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "bigm",
    "noindent", "centering", "relax", "protect", "newline", "linebreak", "hfill", "vfill",
    # wrappers whose argument is the text
    "texttt", "textsf", "textup", "textnormal", "textsuperscript", "textsubscript",
    "boldsymbol", "bm", "operatorname", "mbox", "hbox",
)
# fmt: on


@functools.cache
def _latex_converter():
    # Imported lazily: pylatexenc's macro tables take ~50 ms to build and most runs of a
    # parser never meet a LaTeX title.
    from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, get_default_latex_context_db

    context = get_default_latex_context_db()
    context.add_context_category(
        "catalogue",
        macros=[MacroTextSpec(name, discard=False) for name in _FORMATTING_MACROS],
        prepend=True,
    )
    # Any other unknown macro (\ours, \method, \RR) is usually the paper's own shorthand:
    # keep the word, where pylatexenc would drop it.
    context.set_unknown_macro_spec(MacroTextSpec("", simplify_repl=_unknown_macro_text))
    return LatexNodes2Text(
        latex_context=context,
        math_mode="text",
        # Keep the space after a symbol macro: "\zeta Series" -> "ζ Series", not "ζSeries".
        strict_latex_spaces={
            "between-macro-and-chars": False,
            "between-latex-constructs": True,
            "after-comment": False,
            "in-equations": "based-on-source",
        },
    )


def _unknown_macro_text(node, l2tobj) -> str:
    args = [arg for arg in (node.nodeargd.argnlist if node.nodeargd else []) if arg is not None]
    if args:
        return "".join(l2tobj.nodelist_to_text([arg]) for arg in args)
    return node.macroname


def latex_to_text(text: str) -> str:
    """LaTeX made readable (``$\\omega$Test`` -> ``ωTest``, ``G\\'omez`` -> ``Gómez``).

    Text without LaTeX markup is returned unchanged; ordinary characters LaTeX would treat
    specially (``50%``, ``R&B``, ``$200k``) are escaped first so they survive.
    """
    if not _LATEX_HINT.search(text):
        return text
    repaired = _DOUBLED_ESCAPE.sub(r"\\", _BARE_MACRO.sub(r"\\\1{", text))
    segments = split_math(repaired)
    if any(not is_math and _MARKUP.search(piece) for is_math, piece in segments):
        return _convert(_escape_literals(repaired), fallback=text)
    # LaTeX only inside $…$ (most titles that have any): pylatexenc reads every character
    # it is given (~1 ms a title), so it is given the math alone, and the text around it is
    # kept as it is; formulas such as $\alpha$ recur, so their conversions are cached.
    return "".join(_convert_math(piece) if is_math else piece for is_math, piece in segments)


# Markup outside math that needs pylatexenc (an escaped "\$" included).
_MARKUP = re.compile(r"[\\{}]")


@functools.lru_cache(maxsize=8192)
def _convert_math(formula: str) -> str:
    return _convert(formula, fallback=formula)


def _convert(latex: str, *, fallback: str) -> str:
    try:
        return _latex_converter().latex_to_text(latex)
    except Exception:
        # pylatexenc raises assorted errors on malformed input (\href without arguments,
        # unbalanced braces); the raw text is more useful than nothing.
        return fallback


def clean_title(text: str) -> str:
    """A display title: one line, single spaces, LaTeX made readable."""
    return collapse_whitespace(latex_to_text(collapse_whitespace(text)))


@functools.lru_cache(maxsize=65536)  # names recur across papers; LaTeX ones cost ~1 ms each
def clean_author(name: str) -> str:
    """An author's display name: single spaces, LaTeX accents decoded (``M{\\"u}ller``)."""
    return collapse_whitespace(latex_to_text(collapse_whitespace(name)))


# Escapes that only mean "this character" in running text. Inside $…$ they are left alone:
# there they are TeX for a math renderer, and "\%" unescaped would start a TeX comment.
_TEXT_ESCAPES = re.compile(r"\\([%&#_])")


def unescape_text_specials(text: str) -> str:
    r"""``50\%`` -> ``50%`` outside math; ``\$`` stays (an unescaped $ could open math)."""
    if "\\" not in text:
        return text
    if "$" not in text:  # no math to keep apart (the common case: splitting costs ~70 µs)
        return _TEXT_ESCAPES.sub(r"\1", text)
    if not _TEXT_ESCAPES.search(text):  # math but no escape (an abstract in eight): as it is
        return text
    return "".join(
        piece if is_math else _TEXT_ESCAPES.sub(r"\1", piece) for is_math, piece in split_math(text)
    )


def clean_abstract(text: str) -> str:
    """An abstract: arXiv's hard wraps joined, paragraphs kept as blank lines.

    Math stays TeX (a page may render it); only text escapes like ``\\%`` are undone.
    """
    paragraphs = re.split(r"\n\s*\n|\n  (?=\S)", (text or "").strip())
    cleaned = (unescape_text_specials(collapse_whitespace(p)) for p in paragraphs)
    return "\n\n".join(p for p in cleaned if p)


# --- links -------------------------------------------------------------------------------

# Browsers drop tabs and newlines anywhere in a URL ("java\tscript:" runs as "javascript:"),
# so they are dropped before the scheme is judged; any other control character or a space
# means the value is not a link at all.
_URL_IGNORED = re.compile(r"[\t\n\r]")
_URL_INVALID = re.compile(r"[\x00-\x20\x7f-\x9f\ud800-\udfff]")
_LINK_SCHEME = re.compile(r"^(https?)://", re.IGNORECASE)
MAX_LINK_LENGTH = 500  # the link columns' size


def clean_link(url: str) -> str:
    """An http(s) link as a page may render it (scheme lower-cased), else "".

    Listing links are untrusted: ``javascript:``, ``data:``, ``vbscript:`` (in any case, with
    tabs or newlines inside), scheme-relative and host-less links are dropped, so the record
    still lands, without the link.
    """
    url = _URL_IGNORED.sub("", (url or "").strip())
    match = _LINK_SCHEME.match(url)
    if not match or _URL_INVALID.search(url) or len(url) > MAX_LINK_LENGTH:
        return ""
    url = match.group(1).lower() + url[len(match.group(1)) :]
    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError:  # an unclosed "[" of an IPv6 host
        return ""
    return url if host else ""


# A GitHub/GitLab repository link inside free text. Stops before trailing punctuation and
# before the ".." of "..{github}" placeholders.
_CODE_URL_RE = re.compile(
    r"https?://(?:www\.)?(?:github\.com|gitlab\.com)/[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+",
    re.IGNORECASE,
)
# "/tree/main" or "/blob/master/" alone add nothing to the repository link; deeper paths
# (a monorepo's sub-project) are kept because they are what the authors pointed to.
_DEFAULT_BRANCH = re.compile(r"/(?:tree|blob)/(?:main|master)/?$")


def find_code_url(text: str) -> str:
    """The first repository link in ``text`` (trailing dots/punctuation dropped), or ""."""
    match = _CODE_URL_RE.search(text or "")
    if not match:
        return ""
    return normalize_code_url(match.group(0))


def normalize_code_url(url: str) -> str:
    """``owner/repo`` or a full URL -> ``https://github.com/owner/repo`` without junk.

    HF's ``githubRepo`` is typed by people: it holds hard wraps ("github.com/\\nOwner/Repo"),
    trailing slashes, ``.git``, ``www.`` and ``/tree/main``.
    """
    url = _WHITESPACE.sub("", url or "").rstrip(".,;:)]}'\"")
    if not url:
        return ""
    if not url.startswith(("http://", "https://")):
        if re.fullmatch(r"[\w.\-]+/[\w.\-]+", url):
            url = f"https://github.com/{url}"
        else:
            return ""
    url = re.sub(r"^http://", "https://", url)
    url = re.sub(r"^https://www\.(github|gitlab)\.com", r"https://\1.com", url)
    url = re.split(r"[?#]", url, maxsplit=1)[0].rstrip("/")
    url = _DEFAULT_BRANCH.sub("", url).rstrip("/")
    return clean_link(url.removesuffix(".git"))
