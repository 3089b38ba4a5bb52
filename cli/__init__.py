"""The ``rcml-st`` command line (Typer). Thin commands over the :mod:`rcml_st` library."""
