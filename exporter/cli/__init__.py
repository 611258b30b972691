"""The command line: argument parsing, the commands, and the supervisor of `--workers N`."""
