"""The leaderboard: submissions (:mod:`~gnnbench.leaderboard.schema`), made from harness runs
(:mod:`~gnnbench.leaderboard.submit`), validated and rescored by the package's own evaluators, rendered as a
Markdown board and a static HTML page."""
