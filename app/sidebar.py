"""The sidebar on every page: which model, device and dtype, and a short card about this machine."""

from __future__ import annotations

import streamlit as st

from app.early import dashboard_threads, machine
from app.hosting import offered_models
from app.kitchen import Selection, visitor_menu
from app.presentation import KEY as PRESENTATION_KEY
from app.presentation import settings_area
from app.remote_kitchen import current_server, kitchen_kinds, server_inputs
from app.state import keep_offered
from engine import DEFAULT_MODEL
from engine.units import fmt_bytes


def dtype_choices(device: str) -> list[str]:
    """The dtypes offered for a device, the engine's default first."""
    return list(machine().dtypes[device])


def current_selection() -> Selection:
    """The visitor's current choice (defaults when the sidebar has not been drawn, e.g. a page tested alone)."""
    device = st.session_state.get("sidebar_device") or machine().devices[0]
    dtype = st.session_state.get("sidebar_dtype")
    if dtype not in dtype_choices(device):
        dtype = dtype_choices(device)[0]
    offered = offered_models()
    default = offered[0] if offered else DEFAULT_MODEL
    model = (st.session_state.get("sidebar_model") or default).strip() or default
    if offered is not None and model not in offered:
        model = default  # hosted mode: whatever the page was sent, only the configured models
    selection = Selection(model=model, device=device, dtype=dtype)
    menu = visitor_menu()
    if menu is not None and selection not in menu:
        return menu[0]  # a hosted kitchen's visitor cooks on what is loaded (only the presenter loads models)
    return selection


@st.cache_data(show_spinner=False)
def hardware_card(device: str) -> str:
    """A few lines of markdown about this machine, as the engine detects it."""
    info = machine().hardware[device]
    lines = [
        f"**CPU** {info['cpu']}  \n{info['cpu_cores_physical']} cores / {info['cpu_cores_logical']} threads",
        f"**Model threads** {dashboard_threads()} (the rest is left for drawing this page, so drawing does "
        "not slow the model)",
        f"**Memory** {fmt_bytes(info['memory_total_bytes'])}",
        f"**GPU** {info['gpu']} ({fmt_bytes(info.get('gpu_memory_total_bytes'))})"
        if "gpu" in info
        else "**GPU** none detected",
        f"**Engine picks** {machine().devices[0]} · {dtype_choices(machine().devices[0])[0]}",
    ]
    return "  \n".join(lines)


def menu_picker(pickers: object, menu: list[Selection]) -> None:
    """A hosted kitchen's visitor picks one of the models loaded now (the presenter loads others)."""
    names = [f"{choice.model} · {choice.dtype} on {choice.device}" for choice in menu]
    keep_offered("sidebar_menu", names)
    picked = pickers.selectbox(
        "Model", names, key="sidebar_menu", help="The models loaded in this kitchen now (the presenter loads others)."
    )
    choice = menu[names.index(picked)]
    st.session_state.update(sidebar_model=choice.model, sidebar_device=choice.device, sidebar_dtype=choice.dtype)


def draw_sidebar() -> Selection:
    """Draw the model/device/dtype pickers and the hardware card; return the selection."""
    devices = list(machine().devices)
    keep_offered("sidebar_device", devices)
    with st.sidebar:
        st.toggle(
            "Presentation mode",
            key=PRESENTATION_KEY,
            help="For projecting: larger type and charts, settings folded away.",
        )
        st.markdown("### 🍳 The kitchen")
        kinds = kitchen_kinds()
        if len(kinds) > 1:
            keep_offered("sidebar_kitchen", kinds)
            st.radio(
                "The live page cooks on",
                kinds,
                key="sidebar_kitchen",
                horizontal=True,
                help="This machine: the model below, measured in-process. A server: an OpenAI-compatible server you "
                "run (vLLM, SGLang, TGI, llama.cpp, Ollama), timed here as its tokens arrive.",
            )
        if current_server() is not None:
            server_inputs(settings_area("The server"))
            st.caption("Experiments and the other pages still cook on this machine's model, below.")
        pickers = settings_area("Model, device and dtype")
        offered, menu = offered_models(), visitor_menu()
        if menu is not None:
            menu_picker(pickers, menu)
        elif offered is None:
            pickers.text_input(  # the default as `value` (see pages/live.py: state set before a widget can show empty)
                "Model",
                DEFAULT_MODEL,
                key="sidebar_model",
                help="The bundled default, a Hugging Face id (e.g. HuggingFaceTB/SmolLM2-360M-Instruct) or a local "
                "folder. Other models load where the hub is reachable or they are in the local Hugging Face cache.",
            )
        else:
            if st.session_state.get("sidebar_model") not in offered:
                st.session_state.pop("sidebar_model", None)
            pickers.selectbox(
                "Model", offered, key="sidebar_model", help="The models this kitchen's host offers (its configuration)."
            )
        device = st.session_state["sidebar_device"]
        if menu is None:
            device = pickers.selectbox(
                "Device", devices, key="sidebar_device", help="Only devices this machine has are offered."
            )
            choices = dtype_choices(device)
            keep_offered("sidebar_dtype", choices)
            pickers.selectbox(
                "Dtype",
                choices,
                key="sidebar_dtype",
                help="Number format of the weights. The first is the engine's default for this device. "
                "Which is faster on a CPU depends on the processor: the memory-wall experiment measures it here.",
            )
        with st.container(border=True):
            st.markdown("**This machine**")
            st.markdown(hardware_card(device))
    return current_selection()
