"""The Batching page's last question, asked of the visitor's own server: its load sweep, run from here or the CLI.

The sweep (engine.experiments.server_load) runs on a thread of its own against the server chosen in the sidebar
(app.remote_kitchen), never on the local model; its result is saved like any experiment's and drawn beside this
machine's batching curve when there is one.
"""

from __future__ import annotations

import streamlit as st

from app import experiment_charts
from app.experiment_view import chosen_result, run_controls
from app.presentation import show_chart
from app.remote_kitchen import RemoteSweepJob, current_server, sweep_options
from app.state import remember
from app.text import literal
from engine import EngineError
from engine.experiments.result import ExperimentResult
from engine.experiments.server_load import versus_kitchen
from engine.remote_run import CLIENT_CLOCK

LEVEL_CHOICES = [1, 2, 4, 8, 16]  # streams at once (the CLI goes to 64: a visitor's button stays gentler)
DEFAULT_LEVELS = [1, 2, 4, 8]
CLI_HINT = (
    "`python -m engine experiment server-load --endpoint http://HOST:PORT/v1 --server-model NAME` does the same "
    "from a shell."
)


def sweep_controls() -> None:
    """Levels, tokens and Run/Stop for the server chosen in the sidebar; or how to choose one."""
    server = current_server()
    if server is None:
        st.caption(
            "Choose **a server** under *The live page cooks on* in the sidebar (vLLM, SGLang, TGI, llama.cpp, "
            f"Ollama, transformers serve: any OpenAI-compatible one) to sweep it from here. {CLI_HINT}"
        )
        return
    columns = st.columns([3, 1])
    levels = columns[0].multiselect(
        "Streams sent at once", LEVEL_CHOICES, default=DEFAULT_LEVELS, key=remember("batch_server_levels"),
        help="Each level sends this many identical chat requests together, after one unmeasured warm-up request.",
    )  # fmt: skip
    tokens = columns[1].number_input("Tokens per stream", 4, 512, 64, key=remember("batch_server_tokens"))
    try:
        server.check()
    except EngineError as err:
        st.warning(f"The sidebar's server cannot be swept: {literal(err)}.")
        return
    options = sweep_options(server, concurrency=tuple(sorted(levels)), max_new_tokens=int(tokens))
    st.caption(
        f"Sends {sum(levels)} chat requests to the server's {literal(server.model)} in {len(levels)} rounds (plus "
        f"one warm-up), every token timed at this client. {CLI_HINT}"
    )
    run_controls(
        "server-load",
        options,
        key="batch_server",
        make_job=lambda: RemoteSweepJob(experiment="server-load", options=options, server=server),
    )


def server_section(kitchen: ExperimentResult | None) -> None:
    """The same question asked of the visitor's own server, drawn beside this machine's batching curve if any."""
    st.subheader("Your own server, the same question")
    sweep_controls()
    server = chosen_result("server-load", key="batch_server")
    if server is None:
        return
    host = str(server.model.get("source", "?")).removeprefix("remote: ")  # also in a stopped sweep (its details: none)
    st.markdown(f"**{literal(server.model['name'])}** on {literal(host)}: {literal(server.finding)}")
    if kitchen is not None and (said := versus_kitchen(list(server.rows), list(kitchen.rows))):
        st.markdown(f"**Beside this machine.** {literal(said)}")
    show_chart(experiment_charts.batch_vs_server_chart(kitchen, server), key="batch_chart_server")
    st.caption(
        f"The server's times were {literal(CLIENT_CLOCK)}."
        + ("" if kitchen is not None else " Run the batching experiment above to draw this machine's curve beside it.")
    )
