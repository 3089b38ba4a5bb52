"""`rcml-st prepare`: converters from public catalogue formats to the rcml-st data format."""

from __future__ import annotations

import typer

app = typer.Typer(help="Convert public catalogue formats into rcml-st JSON Lines.", no_args_is_help=True)
