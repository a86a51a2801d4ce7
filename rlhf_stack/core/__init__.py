"""Core: stage-agnostic building blocks (errors, config base, artifacts, pipeline, models, ...). Imports nothing above it."""
