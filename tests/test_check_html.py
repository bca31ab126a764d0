"""The page checks that need no browser: Python warnings and bare values shown to a reader."""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))
try:
    import check_html
finally:
    sys.path.remove(str(TOOLS))

STDERR = '<div class="output stderr highlight-myst-ansi notranslate"><div class="highlight"><pre><span></span>{}</pre>'
PLAIN = '<div class="output text_plain highlight-myst-ansi notranslate"><div class="highlight"><pre><span></span>{}</pre>'


def test_a_warning_in_an_output_is_found():
    page = STDERR.format("/tmp/x.py:8: MatplotlibDeprecationWarning: vert: bool was deprecated")
    assert check_html.shown_warnings(page) == ["MatplotlibDeprecationWarning: vert: bool was deprecated"]


def test_a_progress_bar_is_not_a_warning():
    assert check_html.shown_warnings(STDERR.format("train: 100%|##########| 200/200 [00:11, loss=0.41]")) == []


def test_bare_values_are_found_and_labelled_output_is_not():
    for value in ("200", "1.8338908449418023", "-7.1e-15", "&#39;1.52 and 1.64&#39;", "None"):
        assert check_html.stray_values(PLAIN.format(value)), value
    for text in ("trained in 12.6 s", "(0.5, 0.2)", "tensor([1., 2.])"):
        assert check_html.stray_values(PLAIN.format(text)) == [], text
