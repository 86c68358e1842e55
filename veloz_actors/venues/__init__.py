"""Exchange adapters: each parses its venue's raw payloads into VeloZ messages at the edge."""
