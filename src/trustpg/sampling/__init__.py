"""Collecting batches: the in-process collector and normalisers (:mod:`~trustpg.sampling.rollout`)
and the Ray sampler (:mod:`~trustpg.sampling.distributed`)."""
