"""`make run`: start the default model's worker first, then the Streamlit server in this same process.

    python -m app.launch [streamlit run options]

Python plus Streamlit's imports take about a second before the server's own start hook (app/serve.py) could
start the worker; started here, its ~7 s of loading begins at once, beside the server's start.
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.early import start_default_worker
from app.hosting import kitchen_config
from engine.config import KitchenConfig
from engine.errors import SettingsError

SERVE = Path(__file__).resolve().parent / "serve.py"


def server_options(config: KitchenConfig, given: list[str]) -> list[str]:
    """The Streamlit options the hosting configuration implies, where the command line does not set them."""
    options = [] if any(arg.startswith("--server.address") for arg in given) else ["--server.address", config.address]
    for host in config.allowed_hosts:
        options += ["--server.allowedHosts", host]
    if config.hosted:  # visitors see a sentence, never a traceback with the server's paths (the log keeps it)
        options += ["--client.showErrorDetails", "none", "--server.enableXsrfProtection", "true"]
    return options


def main() -> None:
    """Check the configuration, start the worker, then hand the command line to `streamlit run app/serve.py`."""
    try:
        config = kitchen_config()
    except SettingsError as err:
        sys.exit(f"Inference Kitchen did not start: {err}")
    start_default_worker()
    from streamlit.web import cli

    given = sys.argv[1:]
    cli.main(["run", str(SERVE), *server_options(config, given), *given], prog_name="streamlit")


if __name__ == "__main__":
    main()
