"""The build report: a Markdown summary of every stage's metrics."""
