"""`make run`: start the default model's worker first, then the Streamlit server in this same process.

    python -m app.launch [streamlit run options]

Python plus Streamlit's imports take about a second before the server's own start hook (app/serve.py) could
start the worker; started here, its ~7 s of loading begins at once, beside the server's start.
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.early import start_default_worker

SERVE = Path(__file__).resolve().parent / "serve.py"


def main() -> None:
    """Start the worker, then hand the command line to `streamlit run app/serve.py`."""
    start_default_worker()
    from streamlit.web import cli

    cli.main(["run", str(SERVE), *sys.argv[1:]], prog_name="streamlit")


if __name__ == "__main__":
    main()
