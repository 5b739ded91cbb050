"""Demo and test book: products and accounts that the ML engine stand-in also knows."""
