"""The Costs page's sections: the machine and its cited figures, the throughput, the workload, cards and formulas.

Every number comes from engine.costs (formulas, presets, scaling); these functions only ask and draw.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import cost_charts
from app.presentation import show_chart
from app.state import remember
from engine import costs
from engine.experiments.result import ExperimentResult
from engine.units import fmt_bytes

THIS_MACHINE, CUSTOM = "This machine", "Custom"


@st.cache_data(show_spinner=False)
def presets() -> list[costs.HardwarePreset]:
    """The cited hardware presets (assets/hardware_presets.json)."""
    return costs.load_presets()


def money(value: float) -> str:
    """Dollars with sensible precision."""
    return f"${value:,.2f}" if value >= 1 else f"${value:,.4f}"


def flops_text(value: float) -> str:
    """FLOP/s in TFLOP/s or GFLOP/s."""
    return f"{value / 1e12:,.1f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:,.0f} GFLOP/s"


def figure_rows(machine: costs.HardwarePreset) -> pd.DataFrame:
    """The machine's figures with their kind and source, for display."""
    shown = (
        ("price per hour", machine.price_per_hour, money),
        ("power draw", machine.power_watts, lambda v: f"{v:,.0f} W"),
        ("memory bandwidth", machine.bandwidth_bytes_per_s, lambda v: f"{fmt_bytes(v)}/s"),
        ("peak FLOP/s", machine.peak_flops, flops_text),
    )
    return pd.DataFrame(
        {"figure": label, "value": "n/a" if f.value is None else fmt(f.value), "kind": f.kind, "source": f.source}
        for label, f, fmt in shown
    )


def machine_section(roofline: ExperimentResult | None, energy: ExperimentResult | None):
    """Pick the hardware; returns (the machine priced, this machine as measured)."""
    by_name = {preset.name: preset for preset in presets()}
    choice = st.selectbox("Hardware", [THIS_MACHINE, *by_name, CUSTOM], key=remember("costs_hardware"))
    columns = st.columns(4)
    price, power = 0.05, 65.0  # this machine's placeholders: shown and used only when it is the one chosen
    if choice in (THIS_MACHINE, CUSTOM):
        price = columns[0].number_input(
            "Price per hour ($)", 0.0001, 1000.0, 0.05, 0.01, format="%.4f", key=remember("costs_price"),
            help="What this machine costs you per hour (rent, or purchase spread over its life plus electricity).",
        )  # fmt: skip
        power = columns[1].number_input(
            "Power draw (W)",
            1.0,
            20000.0,
            65.0,
            5.0,
            key=remember("costs_power"),
            help="Used where energy cannot be measured.",
        )
    here = costs.this_machine(price_per_hour=price, power_watts=power, roofline=roofline, energy=energy)
    if choice == THIS_MACHINE:
        machine = here
    elif choice == CUSTOM:
        bandwidth = columns[2].number_input(
            "Memory bandwidth (GB/s)", 0.1, 100000.0, 100.0, key=remember("costs_bandwidth")
        )
        tflops = columns[3].number_input("Peak TFLOP/s", 0.001, 100000.0, 10.0, key=remember("costs_tflops"))
        machine = costs.custom_machine(
            price_per_hour=price, power_watts=power, bandwidth_bytes_per_s=bandwidth * 1e9, peak_flops=tflops * 1e12
        )
    else:
        machine = by_name[choice]
    config = {"source": st.column_config.TextColumn(width="large")}
    st.dataframe(figure_rows(machine), hide_index=True, column_config=config)
    return machine, here


def measured_throughputs(*, trace, server_trace, batch, sweep) -> tuple[dict[str, costs.Throughput], list[str]]:
    """The measured throughputs on offer, by name, and a sentence for each server figure that cannot be priced."""
    measured, unpriced = {}, []
    if trace is not None and (rate := costs.throughput_from_trace(trace)) is not None:
        measured["your latest run (batch 1)"] = rate
    if batch is not None and (rate := costs.throughput_from_batch(batch)) is not None:
        measured["the batching experiment"] = rate
    for name, (rate, why) in (
        ("your server run", costs.throughput_from_server_trace(server_trace) if server_trace else (None, None)),
        ("your server's load sweep", costs.throughput_from_server_load(sweep) if sweep else (None, None)),
    ):
        if rate is not None:
            measured[name] = rate
        elif why is not None:
            unpriced.append(f"{name[0].upper()}{name[1:]} is not offered: {why}.")
    return measured, unpriced


def typed_throughput() -> costs.Throughput:
    """A throughput typed by the visitor."""
    columns = st.columns(3)
    return costs.Throughput(
        prefill_tokens_per_s=columns[0].number_input(
            "Prefill tokens/s", 0.1, 1e7, 500.0, key=remember("costs_typed_prefill")
        ),
        decode_tokens_per_s=columns[1].number_input(
            "Decode tokens/s (all users)", 0.1, 1e7, 30.0, key=remember("costs_typed_decode")
        ),
        concurrent_requests=int(
            columns[2].number_input("Users served at once", 1, 4096, 1, key=remember("costs_typed_batch"))
        ),
        source="typed by you",
        measured_here=False,
    )


def workload_inputs() -> costs.Workload:
    """The workload to price."""
    columns = st.columns(4)
    return costs.Workload(
        requests_per_day=columns[0].number_input("Requests per day", 1, 10**10, 10_000, key=remember("costs_requests")),
        input_tokens=int(
            columns[1].number_input("Input tokens per request", 0, 10**6, 200, key=remember("costs_input_tokens"))
        ),
        output_tokens=int(
            columns[2].number_input("Output tokens per request", 1, 10**6, 250, key=remember("costs_output_tokens"))
        ),
        latency_target_s=columns[3].number_input(
            "Latency target (s)",
            0.1,
            3600.0,
            10.0,
            key=remember("costs_latency"),
            help="The longest a whole answer may take. The seed article: people give up after about 10 s.",
        ),  # fmt: skip
    )


def cost_cards(plan: costs.WorkloadPlan, workload: costs.Workload, throughput: costs.Throughput, machine) -> None:
    """The headline cards: cost per million tokens, tokens per joule and per dollar-hour, request time, machines."""
    energy_label = "measured" if machine.power_watts.kind == "measured" else "estimate"
    rate, price, watts = throughput.decode_tokens_per_s, machine.price_per_hour.value, machine.power_watts.value
    cards = st.columns(4)
    cards[0].metric("cost per million output tokens", money(plan.output_cost_per_million_tokens))
    cards[1].metric(
        f"tokens/J = tokens/s per W ({energy_label})",
        f"{costs.tokens_per_joule(tokens_per_s=rate, watts=watts):,.3f}",
        help="The same number two ways: a watt is a joule per second.",
    )
    cards[2].metric(
        "tokens/s per $/hour", f"{costs.tokens_per_dollar_hour(tokens_per_s=rate, price_per_hour=price):,.1f}"
    )
    cards[3].metric(
        "one request takes", f"{plan.request_seconds:,.1f} s",
        delta="meets the target" if plan.meets_target else "misses the target",
        delta_color="normal" if plan.meets_target else "inverse",
    )  # fmt: skip
    cards = st.columns(4)
    if plan.meets_target:
        busy = f"At an even load they are busy {plan.busy_fraction:.0%} of the time; real traffic has peaks."
        cards[0].metric("machines needed", f"{plan.machines:,}", help=busy)
        cards[1].metric(
            "monthly cost", money(plan.monthly_cost), help="Machines x price per hour x 730 hours, always on."
        )
        cards[2].metric(
            f"energy per day ({energy_label})", f"{plan.energy_kwh_per_day:,.2f} kWh",
            help=f"Machines x {watts:,.0f} W x 24 h, always on. The requests themselves: "
            f"{plan.energy_kwh_per_day_busy:,.3f} kWh.",
        )  # fmt: skip
    else:
        cards[0].warning(  # a verdict on the workload, not a failure
            f"One request takes {plan.request_seconds:,.1f} s, over the {workload.latency_target_s:g} s target: no "
            "number of these machines meets it at this throughput. Fewer output tokens, faster hardware or a "
            "smaller model would."
        )
    cards[3].metric("cost per request", money(plan.cost_per_request))


def formulas(plan: costs.WorkloadPlan, workload: costs.Workload, throughput: costs.Throughput, machine) -> None:
    """The formulas with this page's numbers in them."""
    price, watts, rate = machine.price_per_hour.value, machine.power_watts.value, throughput.decode_tokens_per_s
    per_joule = costs.tokens_per_joule(tokens_per_s=rate, watts=watts)
    st.latex(
        rf"\text{{cost per 1M tokens}} = \frac{{\text{{price/h}}}}{{\text{{tokens/s}} \times 3600}} \times 10^6 = "
        rf"\frac{{{price:,.4f}}}{{{rate:,.2f} \times 3600}} \times 10^6 = {plan.output_cost_per_million_tokens:,.4f}"
    )
    st.latex(
        rf"\text{{tokens per joule}} = \frac{{\text{{tokens/s}}}}{{\text{{watts}}}} = "
        rf"\frac{{{rate:,.2f}}}{{{watts:,.0f}}} = {per_joule:,.4f}"
    )
    st.latex(
        r"\text{request time} = \frac{\text{input}}{\text{prefill tokens/s}} + "
        r"\frac{\text{output}}{\text{decode tokens/s} / \text{users}} = "
        rf"\frac{{{workload.input_tokens}}}{{{throughput.prefill_tokens_per_s:,.1f}}} + "
        rf"\frac{{{workload.output_tokens}}}{{{rate:,.2f} / {throughput.concurrent_requests}}} = "
        rf"{plan.request_seconds:,.2f}\,\text{{s}}"
    )
    if plan.meets_target:
        st.latex(
            r"\text{machines} = \left\lceil \frac{\text{requests/day} \times \text{request time} / \text{users}}"
            rf"{{86\,400}} \right\rceil = {plan.machines}, \quad \text{{monthly}} = \text{{machines}} \times "
            r"\text{price/h} \times 730"
        )
    else:
        st.markdown(
            f"Machines: none. One request takes {plan.request_seconds:,.2f} s, over the "
            f"{workload.latency_target_s:g} s target, however many machines share the load."
        )
    st.caption(
        "Cost per 1M tokens: kubernetes-sigs/inference-perf #139, after NVIDIA's LLM inference cost benchmarking "
        "guide. Even-load sizing: real traffic has peaks, so plan headroom."
    )


def charts_section(machine, here, *, base: costs.Throughput, batch: ExperimentResult | None) -> None:
    """Cost across the presets (and this machine when its price is on screen) and across batch sizes."""
    machines = [here, *presets()] if machine.key == here.key else list(presets())
    across = costs.cost_across_hardware(machines, throughput=base, here=here)
    if len(across) > 1:
        names, values = [name for name, _ in across], [value for _, value in across]
        labels = [f"${value:,.3f}" for value in values]
        chart = cost_charts.cost_across_hardware_chart(names, values, labels, chosen=machine.name)
        show_chart(chart, key="costs_chart_hardware")
        st.caption(
            "Other machines' throughput is an estimate: this machine's measured rate scaled by memory bandwidth. "
            "Prices as cited in the table."
            if base.measured_here
            else "The same throughput on every machine (typed, or your server's, whose hardware is not known here, "
            "so it is not scaled): a comparison of prices only."
        )
    else:
        st.caption("Run the **memory wall** experiment to compare across hardware (it measures the bandwidth the "
                   "estimates scale from).")  # fmt: skip
    if batch is None:
        st.caption("Run the **Batching** experiment to see how the cost per token falls with batch size.")
        return
    points = costs.cost_by_batch(batch, target=machine, here=here)
    if points is None:
        st.caption(f"Run the **memory wall** experiment here so the batching results can be priced on {machine.name}.")
        return
    chart = cost_charts.cost_by_batch_chart([size for size, _ in points], [cost for _, cost in points])
    show_chart(chart, key="costs_chart_batch")
    st.caption(
        f"The batching experiment's measured tokens/s (all users) at {machine.name}'s price per hour"
        + ("." if machine.key == here.key else ", scaled to it by memory bandwidth like the cards above (an estimate).")
    )
