from p2p_core.cli import main

main()
