"""Chapters show code by region and docstrings by section, never by string offsets."""

import pytest

from dbrepro import show


def shown():
    """Intro.

    First heading
    -------------
    first body,
    two lines.

    Second
    ------
    second body.
    """
    x = 1
    # region: the middle
    y = x + 1
    # endregion
    return y


def test_a_region_is_shown_without_its_markers():
    assert show.source(shown, region="the middle").text == "y = x + 1"
    whole = show.source(shown).text
    assert "region" not in whole and "y = x + 1" in whole and whole.startswith("def shown")
    with pytest.raises(KeyError, match="no region 'other'.*the middle"):
        show.source(shown, region="other")


def test_a_docstring_section_by_its_heading():
    assert show.doc(shown, "First heading").text == "first body,\ntwo lines."
    assert show.doc(shown, "Second").text == "second body."
    with pytest.raises(KeyError, match="no section 'Third'.*First heading, Second"):
        show.doc(shown, "Third")


def test_sphinx_roles_become_code():
    assert show.Doc("see :func:`~dbrepro.dfi.x` and ``y``").text == "see `dbrepro.dfi.x` and `y`"
    assert "<span" in show.source(shown)._repr_html_()  # highlighted
