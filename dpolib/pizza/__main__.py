"""`python -m dpolib.pizza`: the pizza run from the command line."""

from .run import main

main()
