"""`python -m detkit` runs the command-line interface."""

from detkit.cli.main import app

if __name__ == "__main__":
    app()
