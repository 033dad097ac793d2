"""Command line: `python -m engine trace|info|bench|experiment ...` (headless; for scripts and workshop prep).

python -m engine trace --prompt "What is the capital of France?" --max-new-tokens 32 --out paris.json
python -m engine info
python -m engine bench --rounds 5
python -m engine experiment prefill --prompt-lengths 16,64,256 --out prefill.json
python -m engine report paris.json prefill.json --out report.html
python -m engine validate paris.json
"""

from __future__ import annotations

import argparse
import sys

from engine.errors import EngineError
from engine.facts import DECODE_PATHS, FASTEST_PATH
from engine.units import fmt_bytes, fmt_ms, fmt_value

DEFAULT_PROMPT = "What is the capital of France?"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The --model/--device/--dtype options shared by every subcommand."""
    parser.add_argument(
        "--model", default=None, help="Hugging Face id or local folder (default: the bundled SmolLM2-135M-Instruct)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps (default: the best available)")
    parser.add_argument(
        "--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on CUDA, else float32)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's, the physical cores; the dashboard leaves one core for drawing)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m engine", description="Inference Kitchen's engine: run a real model and record every token."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    trace = commands.add_parser("trace", help="run one prompt, print a summary and write the trace JSON")
    trace.add_argument("--prompt", required=True, help="the text to send (wrapped in the chat template unless --raw)")
    trace.add_argument("--max-new-tokens", type=int, default=64, help="stop after this many new tokens (default 64)")
    trace.add_argument("--no-kv-cache", action="store_true", help="recompute the whole sequence at every step")
    trace.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); higher = more random")
    trace.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all)")
    trace.add_argument("--top-p", type=float, default=1.0, help="sample among tokens covering probability p (1 = all)")
    trace.add_argument("--seed", type=int, default=0, help="random seed for sampling (same seed, same tokens)")
    trace.add_argument("--raw", action="store_true", help="raw completion: do not apply the chat template")
    trace.add_argument("--ignore-eos", action="store_true", help="always produce --max-new-tokens tokens")
    trace.add_argument(
        "--path",
        default="eager",
        choices=[*DECODE_PATHS, FASTEST_PATH],
        help=f"decode path: {', '.join(DECODE_PATHS)} (eager is the default), or fastest (the best this device "
        "offers); a compiled path is prepared first (minutes the first time, seconds once its cache is on disk)",
    )
    trace.add_argument(
        "--out",
        default=None,
        help="also write the trace here (it is always kept in the run store under the data folder)",
    )
    trace.add_argument(
        "--endpoint",
        default=None,
        help="an OpenAI-compatible server's address (http://host:port/v1): stream the answer from it instead of "
        "running a model here; --model then names the server's model",
    )
    trace.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="with --endpoint: the environment variable holding the server's API key (the key is never written)",
    )
    add_model_options(trace)

    info = commands.add_parser("info", help="print the device, hardware and the model's facts")
    add_model_options(info)

    bench = commands.add_parser("bench", help="time our loop against model.generate and the kitchen alone (A B C)")
    bench.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt for both loops")
    bench.add_argument("--new-tokens", type=int, default=64, help="new tokens per run (default 64)")
    bench.add_argument("--rounds", type=int, default=5, help="A B rounds after one warm-up each (default 5)")
    add_model_options(bench)

    report = commands.add_parser("report", help="write a self-contained HTML report of one or more traces or results")
    report.add_argument(
        "runs", nargs="+", metavar="RUN.json", help="trace or experiment-result files (two or more traces are compared)"
    )
    report.add_argument("--out", required=True, help="the HTML file to write")
    report.add_argument("--title", default="Inference Kitchen report", help="the report's title")

    validate = commands.add_parser(
        "validate", help="check a trace or result file: exit 0 when valid, 2 with the reason otherwise"
    )
    validate.add_argument("file", metavar="FILE.json")

    from engine.experiments import EXPERIMENTS

    experiment = commands.add_parser("experiment", help="run one experiment and write its result JSON")
    names = experiment.add_subparsers(dest="experiment", required=True, metavar="NAME")
    for name, spec in EXPERIMENTS.items():
        one = names.add_parser(name, help=spec.title, description=f"{spec.title}. {spec.options_type.__doc__}")
        add_options_of(one, spec.options_type)
        one.add_argument(
            "--out",
            default=None,
            help="also write the result here (it is always kept in the run store under the data folder)",
        )
        if not spec.remote:  # a server's experiment loads no model here
            add_model_options(one)
    return parser


def public_fields(options_type: type) -> list:
    """An options dataclass's fields the command line offers: all but secrets (an API key is never an argument,
    which `ps` would show to every user of the machine: --api-key-env names a variable instead)."""
    import dataclasses

    return [option for option in dataclasses.fields(options_type) if not option.metadata.get("secret")]


def add_options_of(parser: argparse.ArgumentParser, options_type: type) -> None:
    """One --flag per field of an experiment's options dataclass, typed and with its help and default."""
    import typing

    hints = typing.get_type_hints(options_type)
    for option in public_fields(options_type):
        flag, kind, default = "--" + option.name.replace("_", "-"), hints[option.name], option.default
        help_text = (
            f"{option.metadata.get('help', '')} (default: "
            f"{','.join(map(str, default)) if isinstance(default, tuple) else default})"
        )
        if kind is bool:
            parser.add_argument(
                flag, dest=option.name, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        elif typing.get_origin(kind) is tuple and typing.get_args(kind)[0] is str:
            parser.add_argument(
                flag, dest=option.name, type=text_list, default=default, metavar="A,B,...", help=help_text
            )
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(
                flag, dest=option.name, type=int_list, default=default, metavar="N,N,...", help=help_text
            )
        else:
            parser.add_argument(flag, dest=option.name, type=kind, default=default, help=help_text)


def int_list(text: str) -> tuple[int, ...]:
    """'16,64,256' -> (16, 64, 256), for list options on the command line."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from err


def text_list(text: str) -> tuple[str, ...]:
    """'eager,compiled' -> ('eager', 'compiled'), for list options of names."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def print_progress(event) -> None:
    """Show model-loading progress on stderr."""
    print(f"[{event.fraction:4.0%}] {event.message}", file=sys.stderr)


def command_trace(args: argparse.Namespace) -> int:
    """Run one prompt and write its trace (on a remote server with --endpoint)."""
    if args.endpoint:
        return command_remote_trace(args)
    from engine.loading import load_model
    from engine.request import check_prompt_text
    from engine.run import run_trace
    from engine.settings import GenerationSettings, check_settings
    from engine.trace import default_trace_path, save_trace

    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        kv_cache=not args.no_kv_cache,
        chat_template=not args.raw,
        stop_at_eos=not args.ignore_eos,
    )
    check_settings(settings)  # fail before spending seconds on loading
    check_prompt_text(args.prompt)
    loaded = load_model(
        args.model, device=args.device, dtype=args.dtype, threads=args.threads, on_progress=print_progress
    )
    from engine.paths import prepare_path

    decode_path = prepare_path(loaded, args.path, on_progress=lambda message: print(message, file=sys.stderr))
    trace = run_trace(loaded, args.prompt, settings=settings, path=decode_path)
    kept = save_trace(trace, default_trace_path())  # every run is kept in the run store (the dashboard's Runs page)
    path = save_trace(trace, args.out) if args.out else kept
    print(render_summary(trace))
    print(f"trace written to {path}" + (f" (and kept in the run store as {kept})" if args.out else ""))
    return 0


def command_remote_trace(args: argparse.Namespace) -> int:
    """Stream one prompt from a remote server and write its trace (a broken stream keeps what had arrived)."""
    import os

    from engine.remote import RemoteError, parse_endpoint
    from engine.remote_run import run_remote_trace
    from engine.settings import GenerationSettings, check_settings
    from engine.trace import default_remote_trace_path, save_trace

    if not args.model:
        raise RemoteError("--endpoint needs --model: the name the server knows the model by (see its /v1/models)")
    local_only = {"--path": args.path != "eager", "--device": args.device, "--dtype": args.dtype,
                  "--no-kv-cache": args.no_kv_cache, "--top-k": args.top_k,
                  "--top-p": args.top_p != 1.0, "--seed": args.seed, "--ignore-eos": args.ignore_eos}  # fmt: skip
    given = [flag for flag, used in local_only.items() if used]
    if given:
        raise RemoteError(
            f"{', '.join(given)} only apply to a model run here: with --endpoint the server is sent the prompt "
            "(a chat turn, or plain text with --raw), --max-new-tokens and --temperature"
        )
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise RemoteError(f"the environment variable {args.api_key_env} is not set or empty")
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    check_settings(settings)
    endpoint = parse_endpoint(args.endpoint, api_key=api_key)
    try:
        trace = run_remote_trace(endpoint, args.prompt, model=args.model, settings=settings, raw=args.raw)
    except RemoteError as err:
        if getattr(err, "trace", None) is None:
            raise
        kept = save_trace(err.trace, args.out or default_remote_trace_path())
        print(render_remote_summary(err.trace))
        raise RemoteError(f"{err} (the {len(err.trace.events)} tokens that arrived are kept, marked incomplete, "
                          f"in {kept})") from None  # fmt: skip
    path = save_trace(trace, args.out or default_remote_trace_path())
    print(render_remote_summary(trace))
    print(f"trace written to {path}")
    return 0


def render_remote_summary(trace) -> str:
    """A one-screen text summary of a remote trace: what arrived, when, and what the server said."""
    from engine.remote_run import ttft_clocks, ttft_story  # imported here like the rest of the remote kitchen

    s, remote = trace.summary, trace.remote
    answer = trace.answer.strip().replace("\n", " ")
    lines = [
        f"{trace.model['name']} on {remote['host']} (remote; {remote['clock']})",
        f"answer: {s.new_tokens} tokens, {'stopped by ' + trace.finish_reason if remote['complete'] else 'INCOMPLETE'}",
        f"answer: {answer[:300]}{'…' if len(answer) > 300 else ''}",
        "",
        f"  time to first token               {fmt_ms(s.ttft_ms)}",
        f"  inter-token latency p50/p90/p99   {fmt_ms(s.itl_p50_ms)} / {fmt_ms(s.itl_p90_ms)} / {fmt_ms(s.itl_p99_ms)}",
        f"  time per output token             {fmt_ms(s.tpot_ms)}   ({s.decode_tokens_per_s or 0:,.1f} tokens/s)",
        f"  total                             {fmt_ms(s.total_ms)}",
        f"  token count                       {remote['count_check']}",
        f"  alternatives (logprobs)           {'sent' if remote['logprobs'] else 'not sent'} by the server",
    ]
    metrics = remote.get("metrics")
    if metrics:
        said = f"{len(metrics['samples'])} samples of {metrics['server']}'s /metrics" if metrics["samples"] else None
        lines.append(f"  server metrics                    {said or metrics['note']}")
    for clock in ttft_clocks(trace)[1:]:  # the server's own TTFTs beside ours, and where ours went
        lines.append(f"  TTFT by {clock.measured_by:<26} {fmt_ms(clock.ttft_ms)} (from when {clock.starts_at})")
    if (story := ttft_story(trace)) is not None:
        lines.append(f"  {story}")
    if remote.get("error"):
        lines.append(f"  stream ended                      {remote['error']}")
    return "\n".join(lines)


def render_summary(trace) -> str:
    """A one-screen text summary of a trace."""
    from engine.trace import path_sentence

    s, m = trace.summary, trace.model
    prompt_tokens = len(trace.prompt["tokens"])
    answer = trace.answer.strip().replace("\n", " ")
    lines = [
        f"{m['name']} · {m['dtype']} on {m['device']} ({trace.hardware.get('gpu') or trace.hardware.get('cpu')})",
        f"prompt: {prompt_tokens} tokens{' (chat template)' if trace.prompt.get('chat_template_applied') else ''}"
        f" · answer: {s.new_tokens} tokens, stopped by {trace.finish_reason}",
        f"answer: {answer[:300]}{'…' if len(answer) > 300 else ''}",
        "",
        f"  time to first token (prefill)     {fmt_ms(s.ttft_ms)}   ({s.prefill_tokens_per_s or 0:,.0f} "
        "prompt tokens/s)",
        f"  inter-token latency p50/p90/p99   {fmt_ms(s.itl_p50_ms)} / {fmt_ms(s.itl_p90_ms)} / {fmt_ms(s.itl_p99_ms)}",
        f"  time per output token             {fmt_ms(s.tpot_ms)}   ({s.decode_tokens_per_s or 0:,.1f} "
        "tokens/s decode)",
        f"  total                             {fmt_ms(s.total_ms)}",
        f"  KV cache                          {m['kv_bytes_per_token']:,} B/token, "
        f"{fmt_bytes(trace.events[-1].kv_cache_bytes)} at the end",
        f"  peak memory                       {fmt_bytes(s.peak_memory_bytes)}",
    ]
    if trace.path is not None:
        lines.append(f"  decode path                       {path_sentence(trace.path)}")
    return "\n".join(lines)


def command_info(args: argparse.Namespace) -> int:
    """Print device, hardware and model facts."""
    from engine.hardware import DTYPES, available_devices, available_dtypes, describe_hardware
    from engine.loading import load_model

    loaded = load_model(
        args.model, device=args.device, dtype=args.dtype, threads=args.threads, on_progress=print_progress
    )
    hardware, facts = describe_hardware(loaded.device), loaded.facts
    print(
        f"device:            {loaded.device} (available here: {', '.join(available_devices())}; dtypes: "
        f"{', '.join(available_dtypes(loaded.device))})"
    )
    print(
        f"cpu:               {hardware['cpu']} ({hardware['cpu_cores_physical']} physical / "
        f"{hardware['cpu_cores_logical']} logical cores)"
    )
    print(f"memory:            {fmt_bytes(hardware['memory_total_bytes'])}")
    if "gpu" in hardware:
        print(f"gpu:               {hardware['gpu']} ({fmt_bytes(hardware.get('gpu_memory_total_bytes'))})")
    print(f"model:             {facts.name} ({facts.source})")
    print(f"parameters:        {facts.parameters:,}")
    print(f"weights:           {fmt_bytes(facts.weight_bytes)} as {facts.dtype}")
    print(
        f"KV bytes/token:    {facts.kv_bytes_per_token:,} = 2 x {facts.layers} layers x {facts.kv_heads} kv "
        f"heads x {facts.head_dim} head dim x "
        f"{DTYPES[facts.dtype].itemsize} bytes"
    )
    print(f"context length:    {facts.context_length:,} tokens")
    return 0


def command_bench(args: argparse.Namespace) -> int:
    """Time our loop against model.generate and print both decode rates and their ratio."""
    import statistics

    from engine.bench import bench
    from engine.loading import load_model

    loaded = load_model(
        args.model, device=args.device, dtype=args.dtype, threads=args.threads, on_progress=print_progress
    )
    print(
        f"{loaded.facts.name} · {loaded.facts.dtype} on {loaded.device} · {args.new_tokens} new tokens, "
        "greedy, KV cache on"
    )

    def show(index: int, ours: float, theirs: float, kitchen: float) -> None:
        print(
            f"  round {index + 1}: ours {ours:6.2f} tokens/s   generate {theirs:6.2f} tokens/s   ratio "
            f"{ours / theirs:.3f}   kitchen alone {kitchen:6.2f} tokens/s"
        )

    result = bench(loaded, prompt=args.prompt, new_tokens=args.new_tokens, rounds=args.rounds, on_round=show)
    print(
        f"median decode: ours {statistics.median(result.ours_tokens_per_s):.2f} tokens/s, "
        f"model.generate {statistics.median(result.generate_tokens_per_s):.2f} tokens/s"
    )
    print(f"ratio ours / generate: {result.ratio:.3f} (goal >= 0.97; rounds on a busy machine vary by several %)")
    print(
        f"recording cost, measured directly: {statistics.median(result.recording_ms):.2f} ms per token "
        f"= {result.recording_share:.1%} of a {statistics.median(result.step_ms):.1f} ms decode step"
    )
    print(
        f"the batched kitchen serving one request: {statistics.median(result.kitchen_tokens_per_s):.2f} tokens/s, "
        f"ratio kitchen / ours {result.kitchen_ratio:.3f} (goal >= 0.95); greedy tokens "
        f"{'the same' if result.kitchen_same_tokens else 'DIFFERENT'}"
    )
    return 0


def command_experiment(args: argparse.Namespace) -> int:
    """Run one experiment, print its rows and finding, and write its result."""

    from engine.experiments import default_result_path, get_experiment, run_experiment, save_result
    from engine.loading import load_model

    spec = get_experiment(args.experiment)
    options = spec.options_type(
        **{option.name: getattr(args, option.name) for option in public_fields(spec.options_type)}
    )
    options.check()  # fail before spending seconds on loading
    if spec.remote:
        loaded = None
        print(f"{spec.title} · {options.server_model} on {options.server().host} (remote)", file=sys.stderr)
    else:
        loaded = load_model(
            args.model, device=args.device, dtype=args.dtype, threads=args.threads, on_progress=print_progress
        )
        print(f"{spec.title} · {loaded.facts.name} · {loaded.facts.dtype} on {loaded.device}", file=sys.stderr)

    def show(event) -> None:
        print(f"[{event.fraction:4.0%}] {event.message}", file=sys.stderr)

    result = run_experiment(loaded, args.experiment, options, on_progress=show)
    kept = save_result(result, default_result_path(args.experiment))  # every result is kept in the run store
    path = save_result(result, args.out) if args.out else kept
    if args.experiment != "kv-cache":  # one row per token there: too many to print
        for row in result.rows:
            print("  " + "  ".join(f"{key}={fmt_value(value)}" for key, value in row.items()))
    print(result.finding)
    print(f"result written to {path}" + (f" (and kept in the run store as {kept})" if args.out else ""))
    return 0


def command_report(args: argparse.Namespace) -> int:
    """Check every run file, then write one HTML report (written whole or not at all)."""
    from engine.report import render_report
    from engine.store import load_run
    from engine.trace import write_text_atomic

    runs = [load_run(path) for path in args.runs]  # every file is checked before anything is written
    out = write_text_atomic(args.out, render_report(runs, title=args.title))
    print(f"report of {len(runs)} run(s) written to {out} ({out.stat().st_size:,} bytes, opens offline)")
    return 0


def command_validate(args: argparse.Namespace) -> int:
    """Say whether a file is a valid trace or experiment result."""
    from engine.store import check_run_dict
    from engine.trace import read_json

    data = read_json(args.file)
    check_run_dict(data)
    kind = (
        f"experiment result ({data['experiment']}, {len(data['rows'])} rows)"
        if data.get("kind") == "experiment"
        else f"trace ({len(data['events'])} tokens)"
    )
    print(f"valid: {args.file} is an Inference Kitchen {kind}, schema_version {data['schema_version']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run a subcommand; engine errors become one line on stderr."""
    args = build_parser().parse_args(argv)
    handlers = {
        "trace": command_trace,
        "info": command_info,
        "bench": command_bench,
        "experiment": command_experiment,
        "report": command_report,
        "validate": command_validate,
    }
    try:
        return handlers[args.command](args)
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: cancelled; nothing was written", file=sys.stderr)
        return 130
