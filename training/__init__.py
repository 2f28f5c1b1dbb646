"""Training code of vlogger-runtime (corpus building, training, evaluation); not shipped."""
