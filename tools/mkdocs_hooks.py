"""MkDocs hook (mkdocs.yml `hooks:`): a link to a file that the site includes as a page, such
as the model card from the benchmarks README, points at that page, so the link works both on
the repository and in the site (where `mkdocs build --strict` would call it broken)."""

from __future__ import annotations

from mkdocs.plugins import event_priority

INCLUDED_AS_PAGE = {
    "../src/agegender/assets/MODEL_CARD.md": "model-card.md",
    "../benchmarks/README.md": "benchmarks.md",
}
"""Links as they read once include-markdown has rebased them onto `docs/`, and their page."""


@event_priority(-100)  # after include-markdown has included and rebased the files
def on_page_markdown(markdown: str, **_) -> str:
    for source, page in INCLUDED_AS_PAGE.items():
        markdown = markdown.replace(f"]({source}", f"]({page}")
    return markdown
