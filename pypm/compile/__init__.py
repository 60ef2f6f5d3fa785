"""pypm inside torch.compile: the dynamo backend ``"pypm"`` and the inductor custom pass."""
