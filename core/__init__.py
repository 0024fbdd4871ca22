"""The bottom layer (docs/architecture.md): plain shared pieces that every app uses and that
import none of them: durations, the error and path formats, answers and their provenance, value
validation, contexts, blending, prediction, and the metrics the engine records."""
