"""Course aids: figures, sliders, shown source, the bandit and memory calculators, and
the exercise checkers."""
