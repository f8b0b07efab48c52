"""The task pipeline: from a labelled target folder to a signed payload and its report."""
