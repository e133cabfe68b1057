"""Private model stores that `qwen-fetch sync` writes and `kind: dir` / `kind: s3` sources read.

``layout``: the store's keys and manifest format (pure); ``backends``: a directory
(NFS share) or an S3-compatible bucket behind one small :class:`~qwen_fetch.store.backends.ObjectStore`
interface; ``transport``: an httpx transport that serves ``file://`` URLs with Range.
"""
