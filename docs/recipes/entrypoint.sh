#!/bin/sh
# Start only on the pinned bytes: re-hash the model offline against ./qwen-fetch.lock (exit 3 on any
# missing, extra or changed file), then run the command.
set -eu
qwen-fetch verify "$MODEL"
exec "$@"
