from gefyra.cli import main

main()
