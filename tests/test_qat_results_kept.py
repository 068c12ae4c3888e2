"""asqhw results --out: a rewrite keeps the hand-measured ResNet-20 stand-in section."""

from __future__ import annotations

from asqhw.cli.results_cmd import KEPT_HEADINGS, kept_sections


def test_the_stand_in_section_is_carried_over_up_to_the_next_heading(tmp_path):
    doc = tmp_path / "r.md"
    doc.write_text(f"# Results\n\ntable\n\n{KEPT_HEADINGS[0]}\n\nmeasured by hand\n\n## Other\n\nnot kept\n")
    kept = kept_sections(doc)
    assert kept == f"\n\n{KEPT_HEADINGS[0]}\n\nmeasured by hand"


def test_a_file_without_the_section_or_no_file_keeps_nothing(tmp_path):
    doc = tmp_path / "r.md"
    assert kept_sections(doc) == ""
    doc.write_text("# Results\n\n## ResNet-20 on CIFAR-10\n")
    assert kept_sections(doc) == ""
