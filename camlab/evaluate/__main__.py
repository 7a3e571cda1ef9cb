from camlab.evaluate.cli import main

main()
