from esb.cli import main

main()
