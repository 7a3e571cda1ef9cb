"""Sphinx extension of camlab's site: links the first use of each glossary entry on every chapter page to the
glossary (done here, on the built pages, so the notebooks themselves stay as their authors wrote them)."""
from __future__ import annotations

import re

from docutils import nodes

from glossary_terms import GLOSSARY

GLOSSARY_DOC = "glossary"
CHAPTER_PREFIX = "chapters/"
#: text under these nodes is never linked: code, maths, links, headings, and the cells' outputs
SKIPPED = (nodes.literal, nodes.literal_block, nodes.math, nodes.math_block, nodes.reference, nodes.title,
           nodes.raw, nodes.target, nodes.image, nodes.term, nodes.admonition)


def term_pattern(term: str) -> re.Pattern:
    """``term`` as a whole word: not inside a longer word or hyphenated name; case-sensitive when it has a capital."""
    flags = 0 if any(ch.isupper() for ch in term) else re.IGNORECASE
    return re.compile(rf"(?<![\w\-+]){re.escape(term)}(?![\w\-+])", flags)


def _entries():
    """``(first term, chinese, [patterns, longest term first])`` per glossary entry."""
    return [(terms[0], chinese, [term_pattern(t) for t in sorted(terms, key=len, reverse=True)])
            for terms, chinese, _ in GLOSSARY]


def _linkable(node: nodes.Text) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, SKIPPED) or "cell_output" in parent.get("classes", []):
            return False
        parent = parent.parent
    return True


def _first_match(text: str, pending: list):
    """The earliest match in ``text`` of any pending entry: ``(start, end, entry)`` or None."""
    best = None
    for entry in pending:
        for pattern in entry[2]:
            match = pattern.search(text)
            if match and (best is None or match.start() < best[0]):
                best = (match.start(), match.end(), entry)
    return best


def link_first_uses(app, doctree, docname: str) -> None:
    """On a chapter page, turn the first use of each glossary entry into a link to its glossary entry."""
    if not docname.startswith(CHAPTER_PREFIX):
        return
    std = app.env.domains.standard_domain
    uri = app.builder.get_relative_uri(docname, GLOSSARY_DOC)
    pending = _entries()
    for text_node in list(doctree.findall(nodes.Text)):
        if not pending or not _linkable(text_node):
            continue
        parts, text = [], str(text_node)
        while (found := _first_match(text, pending)) is not None:
            start, end, entry = found
            _, labelid = std._terms[entry[0].lower()]
            link = nodes.reference(text[start:end], text[start:end], refuri=f"{uri}#{labelid}",
                                   reftitle=f"{entry[0]}: {entry[1]}", classes=["glossary-link"])
            parts += [nodes.Text(text[:start]), link]
            text = text[end:]
            pending.remove(entry)
        if parts:
            text_node.parent.replace(text_node, [*parts, nodes.Text(text)])


def setup(app):
    app.connect("doctree-resolved", link_first_uses)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
