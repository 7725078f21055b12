"""The partner catalogue: one folder per partner, mapped by key in `registry`."""
