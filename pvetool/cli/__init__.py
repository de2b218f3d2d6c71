"""pvetool's command line (click): commands parse, call one library function, and render."""
