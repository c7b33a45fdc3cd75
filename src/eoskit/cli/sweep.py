"""eoskit sweep commands (placeholder until implemented)."""
