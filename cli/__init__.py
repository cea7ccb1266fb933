"""The dx7tools command line (installed as ``dx7tools_cli``)."""
