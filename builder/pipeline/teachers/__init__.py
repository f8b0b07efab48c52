"""Teacher candidates stronger than one linear probe (issue 16 item 3): several encoders' features
together, a small MLP, augmented train images; chosen by k-fold on the target's train split."""
