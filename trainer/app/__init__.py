"""What the commands do: fit (the run lifecycle), evaluate, predict, validate, export,
gates, plot, summary, sweep. The CLI parses arguments and calls these."""
