"""The fund view's data: small summary tables the jobs keep in the same transaction as the rows
they summarise (:mod:`.summaries`), and the queries that read them."""
