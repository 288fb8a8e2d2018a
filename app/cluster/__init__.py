"""Collections sharded over a Ray cluster (issue 19).

A shard is a group of IVF lists of one clustering. ``shard.py`` (the lists a shard holds),
``merge.py`` (the coordinator's top-k merge) and ``placement.py`` (which lists go together)
are plain numpy/faiss; only ``ray_runtime.py`` and ``replicas.py`` import ray, and the
service imports those only when ``VECROUTE_CLUSTER_ADDRESS`` is set, so ``vecroute serve``
without a cluster never loads ray.
"""
