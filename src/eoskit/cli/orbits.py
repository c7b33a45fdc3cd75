"""eoskit orbits commands (placeholder until implemented)."""
