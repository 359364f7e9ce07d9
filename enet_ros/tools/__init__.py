"""Command-line tools: demo, bag evaluation, replay and bag writing."""
