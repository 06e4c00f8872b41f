"""The box at the top of every chapter: a warning in the smoke profile, a note naming the data elsewhere."""

from __future__ import annotations

import pytest

from dbrepro.banner import Banner, banner
from dbrepro.config import get_profile


def test_smoke_profile_warns_that_its_numbers_mean_nothing():
    smoke = get_profile("smoke")
    box = banner(smoke.name, smoke.numbers_meaningful, "the synthetic world (version 1: 60 identities)")
    assert box.level == "warning"
    assert box.title == "Smoke profile: these numbers mean nothing."
    assert "(the synthetic world (version 1: 60 identities))" in box.text and "make book" in box.text
    assert 'class="admonition warning dbrepro-banner"' in box._repr_html_()
    assert box._repr_markdown_() == f"> **{box.title}** {box.text}"


@pytest.mark.parametrize("name", ["cpu", "paper"])
def test_other_profiles_note_the_data_the_numbers_come_from(name):
    profile = get_profile(name)
    box = banner(profile.name, profile.numbers_meaningful, "CASIA-WebFace in InsightFace format")
    assert box.level == "note"
    assert box.title == f"Numbers on this page: {name} profile."
    assert box.text == "Every number here is computed from CASIA-WebFace in InsightFace format."
    assert 'class="admonition note dbrepro-banner"' in box._repr_html_()


def test_html_is_escaped_and_a_bad_level_is_refused():
    box = Banner("a <b> title", "x & y")
    assert repr(box) == "a <b> title x & y"
    html = box._repr_html_()
    assert "a &lt;b&gt; title" in html and "x &amp; y" in html and "<b>" not in html
    with pytest.raises(ValueError, match="'note' or 'warning', got 'danger'"):
        Banner("t", "x", level="danger")
