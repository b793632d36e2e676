"""Optional speed paths for the default MLP networks (NumPy action sampling, hand-written Fisher
and critic gradients, the critic worker process); the trainer attaches them, core never imports
them."""
