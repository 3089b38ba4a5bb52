"""MkDocs hook: the CLI reference page is generated from the Typer app, never written by hand.

A page holding the line ``<!-- rcml-st cli reference -->`` gets, in its place, the Markdown that
Typer's own generator (``typer.cli.get_docs_for_click``, what ``typer MODULE utils docs`` prints)
writes for ``rcml_st.cli.main.app``: every command, its help text, usage, arguments and options.
An import or generation error fails the build (no silent empty page).
"""

from __future__ import annotations

import re

MARKER = "<!-- rcml-st cli reference -->"


def _cli_markdown() -> str:
    import typer
    import typer.main
    from rcml_st.cli.main import app
    from typer.cli import MARKUP_MODE_KEY, get_docs_for_click

    command = typer.main.get_command(app)
    ctx = typer.Context(command, info_name="rcml-st")
    ctx.obj = {MARKUP_MODE_KEY: app.rich_markup_mode}
    text = get_docs_for_click(obj=command, ctx=ctx, name="rcml-st", indent=1)
    # The completion options are Typer's own and say nothing about rcml-st.
    text = re.sub(r"\* `--(install|show)-completion`:[^\n]*\n", "", text)
    # Help texts list their examples as lines indented by two spaces, which Typer passes through as
    # paragraphs: show each run of them as one console block.
    return re.sub(
        r"(?:^  \S[^\n]*\n\n?)+",
        lambda m: (
            "```console\n"
            + "\n".join(line[2:] for line in m.group(0).splitlines() if line.strip())
            + "\n```\n\n"
        ),
        text,
        flags=re.MULTILINE,
    )


def on_page_markdown(markdown: str, **kwargs: object) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, _cli_markdown())
