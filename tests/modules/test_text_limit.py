"""Texts are cut to MAX_TEXT_CHARS characters before tokenisation, whatever their length."""

from __future__ import annotations

import numpy as np

import rcml_st
from rcml_st.modules.inputs import MAX_TEXT_CHARS


def test_a_huge_text_reaches_the_tokenizer_cut_and_encodes_like_its_beginning(tiny_clip_config):
    model = rcml_st.build_model(tiny_clip_config, device="cpu")
    clip = model[0]
    seen: list[int] = []
    tokenizer = clip.tokenizer
    clip.tokenizer = lambda texts: seen.extend(len(t) for t in texts) or tokenizer(texts)
    huge = "nursing pillow navy " * 250_000  # 5 MB
    relation = "matches in colour"
    long_vector = model.encode([huge], relation=relation)
    assert seen and max(seen) <= MAX_TEXT_CHARS
    short_vector = model.encode([huge[:MAX_TEXT_CHARS]], relation=relation)
    assert np.allclose(long_vector, short_vector, atol=1e-6)
