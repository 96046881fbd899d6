"""Guest egress: the per-sandbox policy proxy, its rules and its log (host side)."""
