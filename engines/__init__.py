"""vlogger."""
