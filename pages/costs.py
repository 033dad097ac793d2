"""What inference costs: price a workload on cited hardware with throughput measured here (or typed)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import cost_charts
from app.experiment_view import latest_result, run_controls
from app.presentation import show_chart
from app.text import explanation
from engine import costs
from engine.experiments.energy import EnergyOptions
from engine.trace import latest_trace
from engine.units import fmt_bytes

THIS_MACHINE, CUSTOM = "This machine", "Custom"


@st.cache_data(show_spinner=False)
def presets() -> list[costs.HardwarePreset]:
    """The cited hardware presets (assets/hardware_presets.json)."""
    return costs.load_presets()


def money(value: float) -> str:
    """Dollars with sensible precision."""
    return f"${value:,.2f}" if value >= 1 else f"${value:,.4f}"


def figure_rows(machine: costs.HardwarePreset) -> pd.DataFrame:
    """The machine's figures with their sources, for display."""
    shown = {
        "price per hour": lambda v: money(v), "power draw": lambda v: f"{v:,.0f} W",
        "memory bandwidth": lambda v: f"{fmt_bytes(v)}/s", "peak FLOP/s": lambda v: f"{v / 1e12:,.1f} TFLOP/s" if v >= 1e12 else f"{v / 1e9:,.0f} GFLOP/s",
    }
    rows = []
    for (label, fmt), figure in zip(shown.items(), (machine.price_per_hour, machine.power_watts, machine.bandwidth_bytes_per_s, machine.peak_flops), strict=True):
        kind = "estimate" if figure.estimate else "measured" if figure.source.startswith("measured") else "typed" if figure.source.startswith("typed") else "cited"
        rows.append({"figure": label, "value": fmt(figure.value) if figure.value is not None else "n/a", "kind": kind, "source": figure.source})
    return pd.DataFrame(rows)


st.title("💵 What inference costs")
st.markdown(explanation("costs", "intro"))
roofline, energy, batch = latest_result("roofline"), latest_result("energy"), latest_result("batch")
trace = latest_trace()

# ---- hardware ------------------------------------------------------------------------------------------------
st.header("1. The machine")
st.markdown(explanation("costs", "hardware"))
by_name = {preset.name: preset for preset in presets()}
choice = st.selectbox("Hardware", [THIS_MACHINE, *by_name, CUSTOM], key="costs_hardware")
columns = st.columns(4)
if choice in (THIS_MACHINE, CUSTOM):
    price = columns[0].number_input("Price per hour ($)", 0.0001, 1000.0, 0.05, 0.01, format="%.4f", key="costs_price",
                                    help="What this machine costs you per hour (rent, or purchase spread over its life plus electricity).")
    power = columns[1].number_input("Power draw (W)", 1.0, 20000.0, 65.0, 5.0, key="costs_power",
                                    help="Used where energy cannot be measured: an estimate.")
# This machine's measured bandwidth and FLOP/s scale a measured throughput to other hardware; its price and
# power are only shown (and used) when it is the chosen machine, so the placeholders below never reach the page.
here = costs.this_machine(price_per_hour=price if choice == THIS_MACHINE else 0.05, power_watts=power if choice == THIS_MACHINE else 65.0,
                          roofline=roofline, energy=energy)
if choice == THIS_MACHINE:
    machine = here
elif choice == CUSTOM:
    bandwidth = columns[2].number_input("Memory bandwidth (GB/s)", 0.1, 100000.0, 100.0, key="costs_bandwidth")
    flops = columns[3].number_input("Peak TFLOP/s", 0.001, 100000.0, 10.0, key="costs_tflops")
    machine = costs.custom_machine(price_per_hour=price, power_watts=power, bandwidth_bytes_per_s=bandwidth * 1e9, peak_flops=flops * 1e12)
else:
    machine = by_name[choice]
st.dataframe(figure_rows(machine), hide_index=True, column_config={"source": st.column_config.TextColumn(width="large")})

# ---- throughput ------------------------------------------------------------------------------------------------
st.header("2. How fast it cooks")
st.markdown(explanation("costs", "throughput"))
measured = {}
if trace is not None and costs.throughput_from_trace(trace) is not None:
    measured["your latest run (batch 1)"] = costs.throughput_from_trace(trace)
if batch is not None and costs.throughput_from_batch(batch) is not None:
    measured["the batching experiment"] = costs.throughput_from_batch(batch)
source = st.radio("Throughput from", [*measured, "typed"], horizontal=True, key="costs_throughput_source")
if not measured:
    st.caption("Nothing measured yet: cook one on the **Live inference** page, or run the **Batching** experiment; meanwhile type figures.")
if source == "typed":
    cols = st.columns(3)
    throughput = costs.Throughput(
        prefill_tokens_per_s=cols[0].number_input("Prefill tokens/s", 0.1, 1e7, 500.0, key="costs_typed_prefill"),
        decode_tokens_per_s=cols[1].number_input("Decode tokens/s (all users)", 0.1, 1e7, 30.0, key="costs_typed_decode"),
        concurrent_requests=int(cols[2].number_input("Users served at once", 1, 4096, 1, key="costs_typed_batch")),
        source="typed by you",
    )
else:
    throughput = measured[source]
    if machine.key != "this-machine":
        scaled = costs.scaled_throughput(throughput, measured_on=here, target=machine)
        if scaled is None:
            st.warning(f"Measured on this machine and applied to {machine.name} as-is: run the **memory wall** experiment here so it can be scaled by bandwidth.")
        else:
            throughput = scaled
st.info(f"**{throughput.prefill_tokens_per_s:,.0f}** prefill tokens/s · **{throughput.decode_tokens_per_s:,.1f}** decode tokens/s "
        f"for {throughput.concurrent_requests} user(s) at once — {throughput.source}.")

# ---- workload ----------------------------------------------------------------------------------------------------
st.header("3. The workload")
cols = st.columns(4)
workload = costs.Workload(
    requests_per_day=cols[0].number_input("Requests per day", 1, 10**10, 10_000, key="costs_requests"),
    input_tokens=int(cols[1].number_input("Input tokens per request", 0, 10**6, 200, key="costs_input_tokens")),
    output_tokens=int(cols[2].number_input("Output tokens per request", 1, 10**6, 250, key="costs_output_tokens")),
    latency_target_s=cols[3].number_input("Latency target (s)", 0.1, 3600.0, 10.0, key="costs_latency",
                                          help="The longest a whole answer may take. The seed article: people give up after about 10 s."),
)
plan = costs.plan_workload(workload, throughput, price_per_hour=machine.price_per_hour.value, power_watts=machine.power_watts.value)

# ---- what it costs ----------------------------------------------------------------------------------------------
st.header("4. What it costs")
energy_measured = machine.key == "this-machine" and machine.power_watts.source.startswith("measured")
energy_label = "measured" if energy_measured else "estimate"
per_joule = costs.tokens_per_joule(tokens_per_s=throughput.decode_tokens_per_s, watts=machine.power_watts.value)
cards = st.columns(4)
cards[0].metric("cost per million output tokens", money(plan.output_cost_per_million_tokens))
cards[1].metric(f"tokens/s per watt = tokens per joule ({energy_label})", f"{per_joule:,.3f}", help="The same number two ways: a watt is a joule per second.")
cards[2].metric("tokens/s per $/hour", f"{costs.tokens_per_dollar_hour(tokens_per_s=throughput.decode_tokens_per_s, price_per_hour=machine.price_per_hour.value):,.1f}")
cards[3].metric("one request takes", f"{plan.request_seconds:,.1f} s", delta="meets the target" if plan.meets_target else "misses the target",
                delta_color="normal" if plan.meets_target else "inverse")
cards = st.columns(4)
if plan.meets_target:
    cards[0].metric("machines needed", f"{plan.machines:,}", help=f"At an even load they are busy {plan.busy_fraction:.0%} of the time; real traffic has peaks.")
    cards[1].metric("monthly cost", money(plan.monthly_cost), help="Machines x price per hour x 730 hours, always on.")
    cards[2].metric(f"energy per day ({energy_label})", f"{plan.energy_kwh_per_day:,.2f} kWh",
                    help=f"Machines x {machine.power_watts.value:,.0f} W x 24 h, always on. The requests themselves: {plan.energy_kwh_per_day_busy:,.3f} kWh.")
else:
    cards[0].error(f"One request takes {plan.request_seconds:,.1f} s, over the {workload.latency_target_s:g} s target: no number of these machines "
                   "meets it at this throughput. Fewer output tokens, faster hardware or a smaller model would.")
cards[3].metric("cost per request", money(plan.cost_per_request))
st.markdown(explanation("costs", "formulas"))
st.latex(rf"\text{{cost per 1M tokens}} = \frac{{\text{{price/h}}}}{{\text{{tokens/s}} \times 3600}} \times 10^6 = "
         rf"\frac{{{machine.price_per_hour.value:,.4f}}}{{{throughput.decode_tokens_per_s:,.2f} \times 3600}} \times 10^6 = {plan.output_cost_per_million_tokens:,.4f}")
st.latex(rf"\text{{tokens per joule}} = \frac{{\text{{tokens/s}}}}{{\text{{watts}}}} = \frac{{{throughput.decode_tokens_per_s:,.2f}}}{{{machine.power_watts.value:,.0f}}} = {per_joule:,.4f}")
st.latex(rf"\text{{request time}} = \frac{{\text{{input}}}}{{\text{{prefill tokens/s}}}} + \frac{{\text{{output}}}}{{\text{{decode tokens/s}} / \text{{users}}}} = "
         rf"\frac{{{workload.input_tokens}}}{{{throughput.prefill_tokens_per_s:,.1f}}} + \frac{{{workload.output_tokens}}}{{{throughput.decode_tokens_per_s:,.2f} / {throughput.concurrent_requests}}} = {plan.request_seconds:,.2f}\,\text{{s}}")
st.latex(r"\text{machines} = \left\lceil \frac{\text{requests/day} \times \text{request time} / \text{users}}{86\,400} \right\rceil"
         rf" = {plan.machines}, \quad \text{{monthly}} = \text{{machines}} \times \text{{price/h}} \times 730")
st.caption("Cost per 1M tokens: kubernetes-sigs/inference-perf #139, after NVIDIA's LLM inference cost benchmarking guide. "
           "Even-load sizing: real traffic has peaks, so plan headroom.")

# ---- energy ------------------------------------------------------------------------------------------------------
st.header("5. Energy, measured where it can be")
st.markdown(explanation("costs", "energy"))
run_controls("energy", EnergyOptions(), key="costs_energy")
if energy is not None:
    st.success(f"**Latest energy run.** {energy.finding}")
st.caption(f"Power figure used above: {machine.power_watts.value:,.0f} W — {machine.power_watts.source}.")

# ---- charts -------------------------------------------------------------------------------------------------------
st.header("6. Across hardware, across batch sizes")
# This machine joins the comparison only when its price per hour is on screen (typed above), never a hidden default.
machines = [here, *presets()] if choice == THIS_MACHINE else list(presets())
names, values, labels = [], [], []
for candidate in machines:
    base = measured.get(source) if source != "typed" else throughput
    if base is None or candidate.price_per_hour.value is None:
        continue
    rate = base if candidate.key == "this-machine" or source == "typed" else costs.scaled_throughput(base, measured_on=here, target=candidate)
    if rate is None:
        continue
    names.append(candidate.name)
    values.append(costs.cost_per_million_tokens(price_per_hour=candidate.price_per_hour.value, tokens_per_s=rate.decode_tokens_per_s))
    labels.append(f"${values[-1]:,.3f}")
if len(names) > 1:
    show_chart(cost_charts.cost_across_hardware_chart(names, values, labels, chosen=machine.name), key="costs_chart_hardware")
    st.caption("The typed throughput on every machine: a comparison of prices only." if source == "typed" else
               "Other machines' throughput is an estimate: this machine's measured rate scaled by memory bandwidth. Prices as cited in the table.")
else:
    st.caption("Run the **memory wall** experiment to compare across hardware (it measures the bandwidth the estimates scale from).")
if batch is not None:
    sizes = batch.column("batch_size")
    show_chart(cost_charts.cost_by_batch_chart(sizes, [costs.cost_per_million_tokens(price_per_hour=machine.price_per_hour.value, tokens_per_s=t)
                                                           for t in batch.column("tokens_per_s")]), key="costs_chart_batch")
    st.caption(f"The batching experiment's measured tokens/s (all users) at {machine.name}'s price per hour"
               + ("." if machine.key == "this-machine" else " — measured on this machine, not scaled."))
else:
    st.caption("Run the **Batching** experiment to see how the cost per token falls with batch size.")
st.markdown(explanation("costs", "market"))
show_chart(cost_charts.market_chart(costs.market_projection()), key="costs_chart_market")
st.caption(costs.market_projection()["source"])
