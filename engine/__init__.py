"""Inference Kitchen's engine: load a model, run an instrumented prefill/decode loop, record every token.

    from engine import load_model, run_trace, GenerationSettings
    loaded = load_model()                      # the bundled SmolLM2-135M-Instruct
    trace = run_trace(loaded, "What is the capital of France?", settings=GenerationSettings(max_new_tokens=32))
    print(trace.answer, trace.summary.decode_tokens_per_s)

This package never imports streamlit.
"""

__version__ = "0.1.0"

from engine.errors import EngineError, GenerationCancelled, ModelLoadError, PromptError, SettingsError, TraceFormatError
from engine.generate import CancelFlag, Request, check_prompt_text, prepare_request, stream_generate
from engine.loading import DEFAULT_MODEL, LoadedModel, LoadProgress, load_model
from engine.records import Alternative, Summary, TokenRecord, summarize
from engine.run import collect_trace, run_trace
from engine.settings import GenerationSettings
from engine.tokens import RULE_OF_THUMB_WORDS_PER_TOKEN, TokenPiece, split_into_tokens, words_per_token
from engine.trace import Trace, load_trace, save_trace

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
