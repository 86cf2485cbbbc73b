import datetime as dt

import pytest

from ingest.normalize import (
    clean_abstract,
    clean_author,
    clean_link,
    clean_title,
    find_code_url,
    is_arxiv_category,
    normalize_code_url,
    parse_date,
    split_arxiv_id,
    split_math,
    versionless_arxiv_id,
)

# --- arXiv ids ---------------------------------------------------------------------------


def test_old_style_ids_lose_their_version():
    assert split_arxiv_id("quant-ph/0201082v1") == ("quant-ph/0201082", 1)
    assert versionless_arxiv_id("http://arxiv.org/abs/quant-ph/0201082v1") == "quant-ph/0201082"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://arxiv.org/abs/2104.12255v1", ("2104.12255", 1)),
        ("https://arxiv.org/pdf/2409.05654v9", ("2409.05654", 9)),
        ("oai:arXiv.org:hep-th/9901001", ("hep-th/9901001", None)),
        ("arXiv:2401.01234v3", ("2401.01234", 3)),
        ("0704.0001", ("0704.0001", None)),
    ],
)
def test_id_prefixes_and_versions_are_split_off(raw, expected):
    assert split_arxiv_id(raw) == expected


@pytest.mark.parametrize(
    "raw", ["abc", "https://arxiv.org/api/errors#incorrect_id_format_for_abc", ""]
)
def test_text_that_is_not_an_arxiv_id_gives_none(raw):
    assert split_arxiv_id(raw) is None


# --- titles ------------------------------------------------------------------------------


def test_title_hard_wraps_are_removed():
    raw = "ConvLLaVA: Hierarchical Backbones as Visual Encoder for Large Multimodal\n  Models"
    assert clean_title(raw) == (
        "ConvLLaVA: Hierarchical Backbones as Visual Encoder for Large Multimodal Models"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$ω$Test: WebView-Oriented Testing for Android Applications", "ωTest: WebView-Oriented"),
        (r"$\omega$Test: WebView-Oriented", "ωTest: WebView-Oriented"),
        (r"$\nabla^2$DFT: A Universal Quantum Chemistry Dataset", "∇^2DFT: A Universal"),
        (
            r"AutoCoder: Enhancing Code Large Language Model with \textsc{AIEV-Instruct}",
            "AutoCoder",
        ),
        (r"$\textit{Trans-LoRA}$: towards data-free Transferable", "Trans-LoRA: towards"),
        (r"R\&D agents", "R&D agents"),
        (r"Schr\"odinger bridges", "Schrödinger bridges"),
        ("L$^2$M: Mutual Information Scaling Law", "L^2M: Mutual"),
        ("X^{2}-Gaussian: 4D Radiative Gaussian Splatting", "X^2-Gaussian: 4D"),
        (r"\$OneMillion-Bench", "$OneMillion-Bench"),
        # Real arXivRaw titles (OAI-PMH, 2008).
        (r"On the Issue of the \zeta Series Convergence", "On the Issue of the ζ Series"),
        (r"Trial Wavefunctions for \nu = 1/2 + 1/2", "Trial Wavefunctions for ν = 1/2 + 1/2"),
        (r"{\Large $\gamma$} induced multiparticle emissions", "γ induced multiparticle"),
        (
            r"magnet Gd$_{\textbf{0.7}}$Tb$_{\textbf{0.3}}$MnO$_{\textbf 3}$",
            "magnet Gd_0.7Tb_0.3MnO_3",
        ),
        (r"$\bm{\theta}$-nets", "θ-nets"),
    ],
)
def test_latex_in_titles_becomes_readable(raw, expected):
    assert clean_title(raw).startswith(expected)


@pytest.mark.parametrize(
    "title",
    [
        # Real titles from the HF daily corpus: money, percent and ampersands are not LaTeX.
        "Open-Sora 2.0: Training a Commercial-Level Video Generation Model in $200k",
        "Fixing 7,400 Bugs for 1$: Cheap Crash-Site Program Repair",
        "Babel: Open Multilingual Large Language Models Serving Over 90% of Global Speakers",
        "R&B: Domain Regrouping and Data Mixture Balancing for Efficient Foundation Model Training",
        "Human-Agent Collaborative Paper-to-Page Crafting for Under $0.1",
        "DumpsterCluster: From Dumpster Diving to Serving LLaMA-70B on $60 GPUs",
        "Consistency^2: Consistent and Fast 3D Painting with Latent Consistency Models",
        "μ_0: A Scalable 3D Interaction-Trace World Model",
        "Scaling from $5 to $10 per query",
        "~100x faster decoding",
    ],
)
def test_ordinary_text_in_titles_survives(title):
    assert clean_title(title) == title


def test_money_next_to_real_math_keeps_its_dollar():
    assert clean_title(r"$\alpha$-Nets for under $5") == "α-Nets for under $5"


def test_approximately_tilde_next_to_latex_is_kept():
    assert clean_title(r"$\alpha$-decoding is ~100x faster") == "α-decoding is ~100x faster"


def test_percent_next_to_latex_is_not_a_comment():
    assert clean_title(r"\textsc{Foo}: 50% fewer tokens") == "Foo: 50% fewer tokens"


def test_macros_hugging_face_stripped_of_their_backslash_are_repaired():
    raw = "Distillation via texttt{D}ual-texttt{H}ead\n  texttt{O}ptimization"
    assert clean_title(raw) == "Distillation via Dual-Head Optimization"


def test_unknown_macro_keeps_its_name_instead_of_vanishing():
    assert clean_title(r"\ours{}: a model") == "ours: a model"


def test_latex_that_cannot_be_parsed_falls_back_to_the_raw_title():
    assert clean_title(r"see \href{x}") == r"see \href{x}"


def test_split_math_tells_math_from_money():
    assert split_math("$k$-means for $5") == [(True, "$k$"), (False, "-means for $5")]
    assert split_math("between $5 and $10") == [(False, "between $5 and $10")]


# --- authors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r"M{\"u}ller", "Müller"),
        (r"G\'omez", "Gómez"),
        (r"\v{S}koda", "Škoda"),
        (r"Fran\c{c}ois Gu\'{e}rin", "François Guérin"),
        (r"Mart\'{\i}nez", "Martínez"),
        (r"{\o}rsted", "ørsted"),
        ("Dirk Wübben", "Dirk Wübben"),
        ("  Jean-Marc\n  Azaïs ", "Jean-Marc Azaïs"),
    ],
)
def test_author_latex_accents_become_unicode(raw, expected):
    assert clean_author(raw) == expected


# --- abstracts ---------------------------------------------------------------------------


def test_abstract_wraps_are_joined_and_paragraphs_kept():
    raw = "  Data science is gaining more\nattention.\n  A second paragraph\nhere.\n"
    assert (
        clean_abstract(raw) == "Data science is gaining more attention.\n\nA second paragraph here."
    )


def test_abstract_text_escapes_are_undone_but_math_is_left_alone():
    raw = r"We save 50\% of R\&D cost at $p < 5\%$, and \$0.0007 per call."
    assert clean_abstract(raw) == r"We save 50% of R&D cost at $p < 5\%$, and \$0.0007 per call."


def test_abstract_math_without_text_escapes_is_left_as_it_is():
    # (No escape anywhere: the math is not split out; the text comes back unchanged.)
    raw = r"A bound $O(\sqrt{n})$ on \emph{all} inputs, $\$5$ or $5\$$ each."
    assert clean_abstract(raw) == raw
    assert clean_abstract(raw + r" Cost: 5\%.") == raw + " Cost: 5%."


# --- links -------------------------------------------------------------------------------


def test_code_url_in_text_drops_trailing_punctuation():
    text = "Code is available at https://github.com/ydecastro/super-resolution-testing."
    assert find_code_url(text) == "https://github.com/ydecastro/super-resolution-testing"


def test_project_pages_on_github_io_are_not_code_links():
    assert (
        find_code_url("Code and results are available at https://opendatalab.github.io/REST.") == ""
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Real githubRepo values from the HF daily corpus.
        (
            "https://github.com/\nFightingFighting/NeuroAda.git",
            "https://github.com/FightingFighting/NeuroAda",
        ),
        (
            "https://github.com/sirano1004/\nMargin-Apative",
            "https://github.com/sirano1004/Margin-Apative",
        ),
        ("https://github.com/RED-Search/Qilin/", "https://github.com/RED-Search/Qilin"),
        ("https://github.com/he-h/rhythm/tree/main", "https://github.com/he-h/rhythm"),
        ("https://github.com/RUC-NLPIR/ARPO/blob/main/", "https://github.com/RUC-NLPIR/ARPO"),
        (
            "https://github.com/microsoft/LMOps/tree/main/opo",
            "https://github.com/microsoft/LMOps/tree/main/opo",
        ),
        ("http://www.github.com/owner/repo?tab=readme", "https://github.com/owner/repo"),
        ("owner/repo", "https://github.com/owner/repo"),
        ("not a link", ""),
        ("", ""),
    ],
)
def test_code_urls_are_normalised(raw, expected):
    assert normalize_code_url(raw) == expected


# --- categories and dates ----------------------------------------------------------------


@pytest.mark.parametrize(
    "term", ["cs.LG", "hep-th", "math.GT", "astro-ph.CO", "cond-mat.stat-mech"]
)
def test_real_arxiv_categories_are_recognised(term):
    assert is_arxiv_category(term)


@pytest.mark.parametrize("term", ["03B70, 68Q99", "F.4.1; F.4.m; K.2", ""])
def test_msc_and_acm_classes_are_not_arxiv_categories(term):
    assert not is_arxiv_category(term)


def test_dates_are_read_as_written_without_timezone_shift():
    assert parse_date("2024-05-27T03:50:58.348Z") == dt.date(2024, 5, 27)
    assert parse_date("2019-08-10T00:00:00-04:00") == dt.date(2019, 8, 10)
    assert parse_date("2026-08-20") == dt.date(2026, 8, 20)


@pytest.mark.parametrize("raw", ["yesterday", "", None, 20240527])
def test_unreadable_dates_are_none(raw):
    assert parse_date(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "  jAvAsCrIpT:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "javascript\r:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "DATA:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/",
        "/relative/path",
        "https://",
        "http:///no-host",
        "https://exa mple.org/",
        "https://example.org/\x00",
        "https://example.org/\x7f",
        "ftp://example.org/paper.pdf",
        "example.org",
        "https://[::1/",
        "https://example.org/" + "a" * 500,
    ],
)
def test_links_that_are_not_http_are_dropped(raw):
    assert clean_link(raw) == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://envharness.com/", "https://envharness.com/"),
        (" http://example.org/p?q=1#x ", "http://example.org/p?q=1#x"),
        ("HTTPS://Example.org/Page", "https://Example.org/Page"),
        ("https://exa\nmple.org/", "https://example.org/"),  # as a browser reads it
    ],
)
def test_http_links_are_kept_with_a_lower_case_scheme(raw, expected):
    assert clean_link(raw) == expected


def test_code_links_go_through_the_same_cleaning():
    assert normalize_code_url("https://github.com/owner/repo\x00") == ""
    assert normalize_code_url("javascript:alert(1)//github.com/a/b") == ""
