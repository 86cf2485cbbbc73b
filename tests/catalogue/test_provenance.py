"""Sources by name: every format ingest can record on a sighting has a name readers see."""

from catalogue import provenance
from ingest import sources


def test_every_ingest_format_has_a_display_name():
    assert set(sources.FORMATS) <= set(provenance.SOURCE_NAMES)
    for code in sources.FORMATS:
        assert provenance.source_name(code) != code


def test_every_parser_records_its_format_code_as_the_source():
    # Sightings store ``record.source``: each parser's SOURCE, which must be a format code.
    for code in sources.FORMATS:
        assert code == sources.get_parser(code).SOURCE


def test_an_unknown_code_is_shown_as_is():
    assert provenance.source_name("some_new_format") == "some_new_format"
