"""Agents for nat-gym: the NAT policy (GCN + BMSoftmax), its trainer, and baselines."""
