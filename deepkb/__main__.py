from deepkb.cli import main

main()
