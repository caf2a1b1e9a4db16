"""Gymnasium environments of nat-gym (registered in :mod:`nat_gym.envs.registration`)."""
