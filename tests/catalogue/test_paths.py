"""Paper and topic paths built from a placeholder's are the paths ``reverse()`` builds."""

import pytest
from django.urls import NoReverseMatch, reverse, set_script_prefix
from django.urls.converters import SlugConverter

from catalogue import jinja
from catalogue.converters import PaperSlugConverter
from catalogue.models import Paper, Topic
from catalogue.paths import absolute_urls, fixed_path, slug_path

PAPER_SLUGS = [
    "2401.01234",
    "2401.01234v2",
    "hep-th/9901001",  # old arXiv ids hold a slash
    "math.AG/0101001",
    "12345",
    "a b",
    "100%",
    "ümlaut-ß",
    "日本語",
    "?query#fragment",
    "semi;colon,comma+plus&amp=eq",
    "~tilde:colon@at",
    "'quote\"",
    "<script>",
    "//double",
]
TOPIC_SLUGS = ["linear-attention", "rl", "a_b", "X9"]


@pytest.fixture
def script_prefix():
    """The script prefix a test sets, put back afterwards."""
    yield set_script_prefix
    set_script_prefix("/")


@pytest.mark.parametrize("prefix", ["/", "/catalogue/", "/with space/"])
def test_paper_paths_are_reverses(prefix, script_prefix):
    script_prefix(prefix)
    for slug in PAPER_SLUGS:
        expected = reverse("paper-detail", args=[slug])
        assert slug_path("paper-detail", slug, PaperSlugConverter.regex) == expected, slug
    assert Paper(arxiv_id="hep-th/9901001").get_absolute_url() == (
        reverse("paper-detail", args=["hep-th/9901001"])
    )
    assert Paper(pk=7).get_absolute_url() == reverse("paper-detail", args=["7"])


@pytest.mark.parametrize("prefix", ["/", "/catalogue/"])
def test_topic_paths_are_reverses(prefix, script_prefix):
    script_prefix(prefix)
    for slug in TOPIC_SLUGS:
        assert slug_path("topic-detail", slug, SlugConverter.regex) == reverse(
            "topic-detail", args=[slug]
        )
    assert Topic(slug="rl").get_absolute_url() == reverse("topic-detail", args=["rl"])


@pytest.mark.parametrize(
    ("url_name", "slug", "regex"),
    [
        ("paper-detail", "bad\x00slug", PaperSlugConverter.regex),
        ("paper-detail", "", PaperSlugConverter.regex),
        ("topic-detail", "not a slug", SlugConverter.regex),
    ],
)
def test_slugs_the_converter_refuses_raise_as_reverse_does(url_name, slug, regex):
    with pytest.raises(NoReverseMatch):
        slug_path(url_name, slug, regex)


def test_another_url_configuration_is_followed(settings):
    """A changed ROOT_URLCONF (tests, scripts) is part of the memo's key."""
    assert slug_path("paper-detail", "1", PaperSlugConverter.regex) == "/papers/1/"
    settings.ROOT_URLCONF = "tests.catalogue.urls_mounted"
    assert slug_path("paper-detail", "1", PaperSlugConverter.regex) == "/mounted/papers/1/"


@pytest.mark.parametrize("prefix", ["/", "/catalogue/"])
def test_fixed_paths_are_reverses(prefix, script_prefix):
    script_prefix(prefix)
    for url_name in ["paper-list", "topic-list", "login", "saved-list", "admin:index"]:
        assert fixed_path(url_name) == reverse(url_name)
        assert jinja.url(url_name) == reverse(url_name)
    assert jinja.url("day-page", "2024-01-02") == reverse("day-page", args=["2024-01-02"])


def test_a_name_without_a_path_raises():
    with pytest.raises(NoReverseMatch):
        fixed_path("no-such-page")


@pytest.mark.parametrize("secure", [False, True])
@pytest.mark.parametrize("host", ["127.0.0.1:8000", "catalogue.example.org", "[::1]:8080"])
def test_absolute_urls_are_djangos(rf, settings, host, secure):
    settings.ALLOWED_HOSTS = ["*"]
    request = rf.get("/api/papers", HTTP_HOST=host, secure=secure)
    absolute = absolute_urls(request)
    paper_path = Paper.paths()
    paths = [paper_path(slug) for slug in PAPER_SLUGS]
    paths += ["/", "//elsewhere.example/x", "relative/path", "/a/./b", "/a/../b", "/ümlaut/"]
    for path in paths:
        assert absolute(path) == request.build_absolute_uri(path), path


def test_a_pages_paths_are_each_papers_and_topics_own(script_prefix):
    script_prefix("/catalogue/")
    paper_path, topic_path = Paper.paths(), Topic.paths()
    for slug in PAPER_SLUGS:
        assert paper_path(slug) == Paper(arxiv_id=slug).get_absolute_url()
    for slug in TOPIC_SLUGS:
        assert topic_path(slug) == Topic(slug=slug).get_absolute_url()
    with pytest.raises(NoReverseMatch):
        topic_path("not a slug")


def test_plain_paths_are_joined_to_the_origin_without_django(rf, monkeypatch):
    request = rf.get("/feed/", HTTP_HOST="testserver")
    absolute = absolute_urls(request)
    monkeypatch.setattr(request, "build_absolute_uri", None)  # not called again
    paper_path = Paper.paths()
    for slug in ["2401.01234", "hep-th/9901001", "12345"]:
        assert absolute(paper_path(slug)) == f"http://testserver/papers/{slug}/"
