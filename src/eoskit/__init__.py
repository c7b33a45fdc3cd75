"""eoskit"""
