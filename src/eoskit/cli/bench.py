"""eoskit bench commands (placeholder until implemented)."""
