from whichvoice.cli import main

main()
