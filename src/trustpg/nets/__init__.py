"""The default networks: the MLP actor and critic (:mod:`trustpg.nets.policies`)."""
