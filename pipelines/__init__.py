"""Steps a user runs: ingest, reconstruct, evaluate, export, and the command-line interface."""
