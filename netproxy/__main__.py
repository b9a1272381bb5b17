from netproxy.cli import main

main()
