"""netproxy migrate (see probes, expected, report)."""
