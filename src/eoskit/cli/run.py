"""eoskit run commands (placeholder until implemented)."""
