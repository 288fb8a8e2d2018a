"""Collections sharded over a Ray cluster (issue 19).

A shard is a group of IVF lists of one clustering. ``shard.py`` (the lists a shard holds),
``merge.py`` (the coordinator's top-k merge) and ``placement.py`` (which lists go together)
are plain numpy/faiss; ray is imported by ``shard_set.py``, ``sharded.py`` and
``coordinator.py`` (the API process's side, wired into the service through
``app/service/sharded_search.py``) and by ``ray_runtime.connect``, which ``app/main.py``
calls only when ``VECROUTE_CLUSTER_ADDRESS`` is set, so ``vecroute serve`` without a
cluster never loads ray.
"""
