"""Pure math: distributions, linear algebra (CG), the Fisher information, the update rules
(VPG, NPG, TRPO), advantages, Adam and running moments. Imports torch, numpy and ``trustpg.core``
only: no gymnasium, no I/O, no concrete network."""
