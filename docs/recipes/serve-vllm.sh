#!/bin/sh
# Serve the pinned snapshot with vLLM: the folder of the locked commit, already verified, no hub contact.
set -eu
MODEL=${MODEL:-Qwen/Qwen3-VL-8B-Instruct}
qwen-fetch pull "$MODEL" --frozen --no-smoke   # a no-op when the pinned files are cached
snapshot=$(qwen-fetch path "$MODEL")           # exit 3 when the pinned snapshot is not in the cache
export HF_HUB_OFFLINE=1
exec vllm serve "$snapshot" --served-model-name "$MODEL"
