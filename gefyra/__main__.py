from gefyra.cli import program

program()
