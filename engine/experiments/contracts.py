"""What each experiment's result file must hold: its rows and its extra top-level fields, as engine.contract specs.

These are the fields the experiment writes and the dashboard's pages, the costs model and the report read
(`details["serving"]` on the Batching page, `details["runs"]["on"]` on the KV-cache page, …), so a file that
passes draws on every page. Kept apart from the experiment modules, which import torch: the dashboard's server
checks files without it.
"""

from __future__ import annotations

from engine.contract import FLOAT, INT, POSITIVE_INT, Flag, ListOf, MapOf, Number, Text, optional

SHARE = Number(low=0, high=1.5)  # a measured fraction of a peak (a noisy peak can be beaten a little)
NOTE = Text(max_chars=2_000)

ROWS: dict[str, dict] = {
    "server-load": {
        "concurrency": POSITIVE_INT,
        "streams": POSITIVE_INT,
        "failed": INT,
        "tokens": INT,
        "ttft_p50_ms": optional(FLOAT),
        "ttft_p90_ms": optional(FLOAT),
        "itl_p50_ms": optional(FLOAT),
        "itl_p90_ms": optional(FLOAT),
        "tokens_per_s": FLOAT,
        "stream_tokens_per_s": optional(FLOAT),
        "wall_ms": FLOAT,
    },
    "prefill": {
        "prompt_tokens": POSITIVE_INT,
        "prefill_ms": FLOAT,
        "prefill_tokens_per_s": FLOAT,
        "itl_ms": FLOAT,
        "prefill_min_ms": optional(FLOAT),
        "prefill_max_ms": optional(FLOAT),
        "prefill_ms_per_token": optional(FLOAT),
        "itl_p10_ms": optional(FLOAT),
        "itl_p90_ms": optional(FLOAT),
        "decode_tokens_per_s": optional(FLOAT),
    },
    "kv-cache": {
        "kv_cache": Flag(),
        "step": INT,
        "latency_ms": FLOAT,
        "t_ms": FLOAT,
        "token_id": INT,
        "kv_cache_bytes": INT,
        "position": optional(INT),
    },
    "batch": {
        "batch_size": POSITIVE_INT,
        "tokens_per_s": FLOAT,
        "itl_ms": FLOAT,
        "kv_cache_bytes": INT,
        "per_user_tokens_per_s": FLOAT,
        "prefill_ms": FLOAT,
        "answer_s": FLOAT,
        "within_budget": Flag(),
    },
    "roofline": {
        "dtype": Text(max_chars=40),
        "decode_tokens_per_s": FLOAT,
        "ceiling_tokens_per_s": FLOAT,
        "mbu": SHARE,
        "compute_dtype": optional(Text(max_chars=40)),
        "bytes_per_token": optional(INT),
        "weight_bytes_read": optional(INT),
        "kv_bytes_read": optional(INT),
        "step_ms": optional(FLOAT),
        "read_ms": optional(FLOAT),
        "overhead_ms": optional(Number()),
        "prefill_tokens": optional(INT),
        "prefill_ms": optional(FLOAT),
        "prefill_flops_per_s": optional(FLOAT),
        "peak_flops": optional(FLOAT),
        "mfu": optional(SHARE),
    },
    "train-vs-infer": {
        "mode": Text(max_chars=40),
        "time_ms": FLOAT,
        "peak_memory_bytes": INT,
        "tokens": optional(INT),
        "weights_bytes": optional(INT),
        "gradients_bytes": optional(INT),
        "optimizer_bytes": optional(INT),
        "kv_cache_bytes": optional(INT),
        "activations_bytes": optional(INT),
        "other_bytes": optional(Number(whole=True)),
        "memory_method": optional(NOTE),
    },
    "speed": {
        "path": Text(max_chars=40),
        "dtype": Text(max_chars=40),
        "decode_tokens_per_s": FLOAT,
        "prefill_tokens_per_s": FLOAT,
        "bytes_per_token": INT,
        "mbu": SHARE,
        "prepare_s": FLOAT,
        "token_agreement": Number(low=0, high=1),
        "kl_divergence": FLOAT,
        "kl_divergence_median": optional(FLOAT),
        "kl_divergence_p99": optional(FLOAT),
        "kl_divergence_max": optional(FLOAT),
        "rms_delta_p": optional(Number(low=0, high=1)),
        "positions": optional(POSITIVE_INT),
        "weights": optional(Text(max_chars=40)),
        "itl_ms": optional(FLOAT),
        "weight_bytes_read": optional(INT),
        "kv_bytes_read": optional(INT),
        "ceiling_tokens_per_s": optional(FLOAT),
        "prepare_cache": optional(Text(max_chars=10)),
    },
    "energy": {
        "tokens": POSITIVE_INT,
        "time_s": FLOAT,
        "run": optional(POSITIVE_INT),
        "tokens_per_s": optional(FLOAT),
        "energy_j": optional(FLOAT),
        "average_power_w": optional(FLOAT),
        "tokens_per_joule": optional(FLOAT),
    },
}

PUBLISHED_MODEL = {
    "name": Text(max_chars=200),
    "parameters": INT,
    "kv_bytes_per_token": INT,
    "kv_bytes_per_user": INT,
    "training_bytes": INT,
    "serving_weights_bytes": INT,
    "users_to_exceed_training": INT,
    "context_length": POSITIVE_INT,
    "users_to_exceed_training_at_full_context": INT,
    "source": NOTE,
}
KV_RUN = {"total_ms": FLOAT, "tokens": INT, "kv_cache_bytes": INT, "prompt_tokens": INT}

# A stopped run keeps its rows; the figures computed at the end may be missing (see check_result_dict).
DETAILS: dict[str, dict] = {
    "server-load": {
        "host": Text(max_chars=300),
        "clock": NOTE,
        "errors": ListOf(NOTE, max_items=20),
        "prompt_tokens": optional(POSITIVE_INT),
    },
    "prefill": {"context_length": POSITIVE_INT, "capped_lengths": ListOf(INT, max_items=1_000)},
    "kv-cache": {"same_tokens": Flag(), "runs": {"on": KV_RUN, "off": KV_RUN}},
    "batch": {
        "prompt_tokens": POSITIVE_INT,
        "stopped_early": optional(NOTE),
        "serving": {
            "users": INT,
            "largest_measured": POSITIVE_INT,
            "answer_s": optional(FLOAT),
            "kv_bytes_per_user": INT,
            "kv_bytes_all_users": INT,
            "budget_s": FLOAT,
            "answer_tokens": POSITIVE_INT,
        },
    },
    "roofline": {
        "bandwidth_bytes_per_s": FLOAT,
        "bandwidth_median_bytes_per_s": FLOAT,
        "copy_bytes_per_s": FLOAT,
        "bandwidth_method": NOTE,
        "peak_flops": FLOAT,
        "peak_flops_by_dtype": MapOf(FLOAT, max_items=20),
        "flops_method": NOTE,
        "peak_flops_notes": optional(MapOf(NOTE, max_items=20)),
        "skipped": optional(MapOf(NOTE, max_items=20)),
        "threads": optional(POSITIVE_INT),
    },
    "train-vs-infer": {
        "context_tokens": POSITIVE_INT,
        "this_model": {
            "name": Text(max_chars=200),
            "kv_bytes_per_user": INT,
            "serving_base_bytes": INT,
            "training_bytes": INT,
            "users_to_exceed_training": INT,
            "basis": NOTE,
        },
        "published_models": ListOf(PUBLISHED_MODEL, max_items=50),
        "formula": NOTE,
        "verdict": NOTE,
    },
    "speed": {
        "bandwidth_bytes_per_s": FLOAT,
        "bandwidth_method": NOTE,
        "unavailable": MapOf(NOTE, max_items=20),
        "greedy_match": MapOf(INT, max_items=20),
        "new_tokens": optional(POSITIVE_INT),
        "quality_positions": optional(POSITIVE_INT),
        "reference": optional(NOTE),
        "bandwidth_median_bytes_per_s": optional(FLOAT),
        "copy_bytes_per_s": optional(FLOAT),
        "threads": optional(POSITIVE_INT),
    },
    "energy": {"energy_source": optional(NOTE)},
}
