"""Inference Kitchen's engine: load a model, run an instrumented prefill/decode loop, record every token.

    from engine import load_model, run_trace, GenerationSettings
    loaded = load_model()                      # the bundled SmolLM2-135M-Instruct
    trace = run_trace(loaded, "What is the capital of France?", settings=GenerationSettings(max_new_tokens=32))
    print(trace.answer, trace.summary.decode_tokens_per_s)

This package never imports streamlit.
"""

__version__ = "0.1.0"

# Names are imported on first use (PEP 562), so `import engine.worker` in the dashboard's server can start the
# model's process before anything imports torch (~2.5 s here): the cold start overlaps the two.
_HOMES = {
    "engine.errors": (
        "EngineError",
        "GenerationCancelled",
        "ModelLoadError",
        "PromptError",
        "SettingsError",
        "TraceFormatError",
    ),
    "engine.facts": ("DEFAULT_MODEL", "LoadProgress"),
    "engine.generate": ("prepare_request", "stream_generate"),
    "engine.loading": ("LoadedModel", "load_model"),
    "engine.records": ("Alternative", "Summary", "TokenRecord", "summarize"),
    "engine.request": ("CancelFlag", "Request", "check_prompt_text"),
    "engine.run": ("collect_trace", "run_trace"),
    "engine.settings": ("GenerationSettings",),
    "engine.tokens": ("RULE_OF_THUMB_WORDS_PER_TOKEN", "TokenPiece", "split_into_tokens", "words_per_token"),
    "engine.trace": ("Trace", "load_trace", "save_trace"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> object:
    """Import a public name's module when the name is first asked for."""
    if name not in _HOME_OF:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_HOME_OF[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MODEL",
    "Alternative",
    "CancelFlag",
    "RULE_OF_THUMB_WORDS_PER_TOKEN",
    "TokenPiece",
    "EngineError",
    "GenerationCancelled",
    "GenerationSettings",
    "LoadProgress",
    "LoadedModel",
    "ModelLoadError",
    "PromptError",
    "Request",
    "SettingsError",
    "Summary",
    "TokenRecord",
    "Trace",
    "TraceFormatError",
    "check_prompt_text",
    "collect_trace",
    "load_model",
    "load_trace",
    "prepare_request",
    "run_trace",
    "save_trace",
    "stream_generate",
    "split_into_tokens",
    "summarize",
    "words_per_token",
]
