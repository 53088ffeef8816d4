from omnibind.cli import main

main()
