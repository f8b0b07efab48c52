"""`python -m builder.datasets`: real datasets -> ref-v1 and the target tasks (`make data`)."""
