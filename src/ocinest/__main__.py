from ocinest.cli.main import main

main()
