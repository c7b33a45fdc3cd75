"""eoskit report commands (placeholder until implemented)."""
