from eoskit.cli import main

main()
