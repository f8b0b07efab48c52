"""`make demo`: builder -> broker -> agents of two device classes -> one publish -> a table."""
