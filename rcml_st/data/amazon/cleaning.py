"""Plain text out of real product records: markup, entities, junk values and boilerplate.

Real Amazon records are scraped pages. Titles can be an HTML tag cut short
(``<span class="a-size-medium a-color-secondary"``) or the tail of one (``Magazines" />``),
descriptions mix tags, escaped tags (``&lt;b&gt;``), doubly escaped entities (``&amp;amp;``),
``<script>``/``<style>`` blocks and inline CSS, categories can be nothing but ``</span></span>``,
and a price field can hold CSS. :func:`strip_markup` turns any of these into one line of plain
text (possibly empty).

Boilerplate (a sentence pasted into many *unrelated* products, such as a shop's auto-renewal
notice or a supplement disclaimer on a gift card) is found by frequency, not by a list:
:class:`BoilerplateCounter` counts, for each sentence, the distinct *groups* (brands) of the
products whose description holds it; a sentence held by products of at least ``min_groups``
brands is boilerplate. Products of one brand share their own descriptions (variants of one
magazine), so counting brands rather than products keeps those. The counter keeps 16 bytes
per (product, distinct sentence), never the sentences themselves.
"""

from __future__ import annotations

import html
import math
import re
from array import array
from collections.abc import Iterable

import numpy as np

# A UTF-8 lead byte followed by a continuation byte, both read as Latin-1 characters.
_MOJIBAKE_RE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf]")
# <script>/<style> blocks go with their content; an unterminated one takes the rest of the text.
_BLOCK_RE = re.compile(r"<(script|style)\b[^>]*>.*?(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_COMMENT_RE = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_TAG_RE = re.compile(r"</?[A-Za-z!?][^<>]*>")
# A tag cut short by the scraper: "<span class=..." up to the end of the text (or the next tag).
_OPEN_FRAGMENT_RE = re.compile(r"</?[A-Za-z!?][^<>]*(?=<|$)")
# The tail of a tag whose start was cut off: ' Magazines" />', 'class="x">', at the very start.
_CLOSE_FRAGMENT_RE = re.compile(r"^[^<>]*?(?:[\"']\s*/?|/)>")
# CSS rules ("#buybox .price{color:#B12704}") and stray ones left by a cut <style>.
_CSS_RE = re.compile(r"(?:[#.][\w-]+\s*)*[^\s{}]*\{[^{}]*:[^{}]*\}")
# An entity html.unescape does not know (or a broken one): never shown as text.
_ENTITY_RE = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});")
_SENTENCE_RE = re.compile(r"(?<=[.!?:])\s+(?=\S)")

#: Characters that carry no text: the Unicode replacement character, zero-width marks, BOM.
_INVISIBLE = dict.fromkeys(map(ord, "\ufffd\u200b\u200c\u200d\u2060\ufeff"), " ")


def fix_mojibake(value: str) -> str:
    """Repairs UTF-8 text that was decoded one byte per character ("itâ€™s" for "it’s").

    Only text that is valid UTF-8 once re-encoded as Latin-1 is changed, so genuine Latin-1
    text ("café") is left alone.

    Example:
        >>> fix_mojibake("itâ\\x80\\x99s"), fix_mojibake("café")
        ('it’s', 'café')
    """
    if value.isascii() or not _MOJIBAKE_RE.search(value):
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def strip_markup(value: str) -> str:
    """One line of plain text: tags (complete or cut short), entities, CSS and whitespace removed.

    Entities are decoded until nothing changes (``&amp;amp;`` is ``&``), so escaped tags
    (``&lt;b&gt;``) are removed like real ones; an entity that cannot be decoded is dropped.

    Example:
        >>> strip_markup('<span class="a-size-medium a-color-secondary"')
        ''
        >>> strip_markup(' Magazines" />')
        ''
        >>> strip_markup("Fashion &amp;amp; Style</span></span>")
        'Fashion & Style'
        >>> strip_markup("<b>Soft</b>&nbsp;&amp; warm &lt;i&gt;cotton&lt;/i&gt;  bib")
        'Soft & warm cotton bib'
        >>> strip_markup(".a-box-inner{background-color:#fff} \\n\\n<script")
        ''
    """
    text = fix_mojibake(value)
    for _ in range(4):  # markup can hide behind up to a few rounds of escaping
        before = text
        if "&" in text:
            text = html.unescape(text)
        if "<" in text or ">" in text:
            text = _COMMENT_RE.sub(" ", text)
            text = _BLOCK_RE.sub(" ", text)
            text = _TAG_RE.sub(" ", text)
            text = _OPEN_FRAGMENT_RE.sub(" ", text)
            text = _CLOSE_FRAGMENT_RE.sub(" ", text)
        if text == before:
            break
    if "{" in text:
        text = _CSS_RE.sub(" ", text)
    if "&" in text:
        text = _ENTITY_RE.sub(" ", text)
    return " ".join(text.translate(_INVISIBLE).split())


def sentences(text: str) -> list[str]:
    """Splits plain text into sentences (after ``.``, ``!``, ``?`` or ``:`` and a space).

    Example:
        >>> sentences("Soft bib. Machine washable! Learn more: here")
        ['Soft bib.', 'Machine washable!', 'Learn more:', 'here']
    """
    return [part for part in _SENTENCE_RE.split(text) if part]


def sentence_key(sentence: str) -> int:
    """The hash a sentence is counted under: case, spacing and closing punctuation ignored."""
    return hash(" ".join(sentence.lower().split()).rstrip(".!?:;, "))


class BoilerplateCounter:
    """Finds sentences that recur in the descriptions of products of many different brands.

    Feed every product once with :meth:`add`, then ask :meth:`boilerplate` for the keys (see
    :func:`sentence_key`) of the recurring sentences and drop them with :func:`remove_sentences`.
    Memory: two 8-byte integers per (product, distinct sentence of its description).

    Example:
        >>> counter = BoilerplateCounter()
        >>> for brand in ["Acme", "Bolt", "Cozy", "Dot"]:
        ...     counter.add(f"{brand} bib. Learn more about auto-renewal.", group=brand)
        >>> keys = counter.boilerplate(min_groups=4)
        >>> remove_sentences("Acme bib. Learn more about auto-renewal.", keys)
        'Acme bib.'
    """

    def __init__(self) -> None:
        self._sentences = array("q")
        self._groups = array("q")
        self.products = 0

    def add(self, text: str, group: str) -> None:
        """Counts the distinct sentences of one product's description under its group (brand)."""
        self.products += 1
        group_key = hash(group)
        for key in {sentence_key(s) for s in sentences(text)}:
            self._sentences.append(key)
            self._groups.append(group_key)

    def boilerplate(self, min_groups: int | None = None) -> frozenset[int]:
        """The keys of sentences found in products of at least ``min_groups`` distinct groups.

        Args:
            min_groups: the threshold; ``None`` picks ``max(4, products / 1000)``, so a sentence
                must recur across 4 brands in a small file and across 0.1% of the products in a
                large one. 0 turns the detection off.
        """
        if min_groups is None:
            min_groups = max(4, math.ceil(self.products / 1000))
        if min_groups <= 0 or not self._sentences:
            return frozenset()
        pairs = np.stack(
            [np.frombuffer(self._sentences, dtype=np.int64), np.frombuffer(self._groups, dtype=np.int64)],
            axis=1,
        )
        distinct = np.unique(pairs, axis=0)  # one row per (sentence, group)
        keys, counts = np.unique(distinct[:, 0], return_counts=True)
        return frozenset(int(k) for k in keys[counts >= min_groups])


def remove_sentences(text: str, keys: Iterable[int] | frozenset[int]) -> str:
    """Drops the sentences of ``text`` whose :func:`sentence_key` is in ``keys``.

    Example:
        >>> remove_sentences("Good bib. Call now!", {sentence_key("call now")})
        'Good bib.'
    """
    keys = keys if isinstance(keys, (set, frozenset)) else frozenset(keys)
    if not keys:
        return text
    return " ".join(s for s in sentences(text) if sentence_key(s) not in keys)


def looks_like_junk_price(value: str) -> bool:
    """Whether a price field holds no price at all (markup, CSS, blanks) rather than an odd one.

    Example:
        >>> looks_like_junk_price(".a-box-inner{background-color:#fff}"), looks_like_junk_price("$5 - $9")
        (True, False)
    """
    text = value.strip()
    return not text or not any(ch.isdigit() for ch in strip_markup(text)) or "{" in text or "<" in text
