"""Tensor parallelism over torch.distributed: the process group (group.py), the Megatron
sharding of a model and its per-rank slices of the checkpoint (shard.py), and the launch of
N local processes for ``--tp N`` (launch.py)."""
