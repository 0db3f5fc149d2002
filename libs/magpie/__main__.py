"""`python -m magpie` runs the CLI."""
from magpie.cli.main import app

app()
