"""Processes that run beside the web and worker ones and drive every app below them."""
