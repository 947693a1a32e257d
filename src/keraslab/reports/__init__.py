"""Reports: plots (PNG) and the markdown/HTML documents that embed them."""
