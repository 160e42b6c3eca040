"""The layer DSL (`dlc.nn`) and the tracer."""
