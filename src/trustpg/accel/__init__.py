"""Optional speed paths for networks that declare an ``mlp_spec()`` (NumPy action sampling, the
critic's hand-written gradient, the critic worker process), attached by capability and announced
once when they do not apply (:mod:`trustpg.accel.fallback`); and the signal handling of the child
processes trustpg starts (:mod:`trustpg.accel.children`). Core never imports them."""
