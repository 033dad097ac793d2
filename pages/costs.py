"""What inference costs: price a workload on cited hardware with throughput measured here (or typed)."""

from __future__ import annotations

import streamlit as st

from app import cost_charts
from app.cost_view import (
    charts_section,
    cost_cards,
    formulas,
    machine_section,
    measured_throughputs,
    typed_throughput,
    workload_inputs,
)
from app.experiment_view import latest_result, run_controls
from app.presentation import show_chart
from app.state import remember
from app.text import explanation, literal
from app.your_run import your_run, your_server_run
from engine import costs
from engine.experiments.energy import EnergyOptions

st.title("💵 What inference costs")
st.markdown(explanation("costs", "intro"))
roofline, energy, batch = latest_result("roofline"), latest_result("energy"), latest_result("batch")

st.header("1. The machine")
st.markdown(explanation("costs", "hardware"))
machine, here = machine_section(roofline, energy)

st.header("2. How fast it cooks")
st.markdown(explanation("costs", "throughput"))
trace = your_run(key="costs_your_run")
measured, unpriced = measured_throughputs(
    trace=trace, server_trace=your_server_run(key="costs_server_run"), batch=batch, sweep=latest_result("server-load")
)
source = st.radio("Throughput from", [*measured, "typed"], horizontal=True, key=remember("costs_throughput_source"))
if not measured:
    st.caption(
        "Nothing measured yet: cook one on the **Live inference** page, or run the **Batching** experiment; "
        "meanwhile type figures."
    )
for sentence in unpriced:
    st.caption(literal(sentence))
typed = source == "typed"
base = typed_throughput() if typed else measured[source]
if not typed and not base.measured_here:  # a server's rate: this page cannot see what it runs on
    st.info(
        "Measured on your server, whose hardware this page cannot see: pick the hardware it runs on under "
        "**1. The machine**. Its rate is priced there as measured, never scaled."
    )
throughput = costs.throughput_on(machine, throughput=base, here=here)
if throughput is None:
    st.warning(
        f"Measured on this machine and applied to {machine.name} as-is: run the **memory wall** experiment here so "
        "it can be scaled by bandwidth."
    )
    throughput = base
st.info(
    f"**{throughput.prefill_tokens_per_s:,.0f}** prefill tokens/s · **{throughput.decode_tokens_per_s:,.1f}** decode "
    f"tokens/s for {throughput.concurrent_requests} user(s) at once — {literal(throughput.source)}."
)

st.header("3. The workload")
workload = workload_inputs()
price, watts = machine.price_per_hour.value, machine.power_watts.value
plan = costs.plan_workload(workload, throughput, price_per_hour=price, power_watts=watts)

st.header("4. What it costs")
cost_cards(plan, workload, throughput, machine)
st.markdown(explanation("costs", "formulas"))
formulas(plan, workload, throughput, machine)

st.header("5. Energy, measured where it can be")
st.markdown(explanation("costs", "energy"))
run_controls("energy", EnergyOptions(), key="costs_energy")
if energy is not None:
    st.success(f"**Latest energy run.** {literal(energy.finding)}")
st.caption(f"Power figure used above: {watts:,.0f} W — {machine.power_watts.source}.")

st.header("6. Across hardware, across batch sizes")
charts_section(machine, here, base=base, batch=batch)
st.markdown(explanation("costs", "market"))
show_chart(cost_charts.market_chart(costs.market_projection()), key="costs_chart_market")
st.caption(costs.market_projection()["source"])
