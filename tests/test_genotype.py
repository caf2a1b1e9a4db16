"""Tests for nat_gym.genotype and nat_gym.genotypes: formats, round trips, validation and the registry."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nat_gym import genotypes, ops
from nat_gym.errors import GenotypeError, InvalidOpError
from nat_gym.genotype import Cell, DartsGenotype, Edge, Genotype

ALL_NAMES = genotypes.names()

# DARTS_V2 as written in DARTS's genotypes.py (Liu et al. 2019), the pair format, verbatim.
DARTS_V2_REPR = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=range(2, 6), "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=range(2, 6))"
)

# sha1(str(DARTS_V2))[:16], computed once: the digest must never change across versions or processes.
DARTS_V2_DIGEST = "5a983946e6f5f146"

# The published genotypes (the NAT spec's genotypes.json, triple format), copied here as compact strings: each
# cell's edges in the file's order, names spelled as in the file (``Mobilenetv2``).
PUBLISHED_GENOTYPES: dict[str, str] = {
    "DARTS": (
        "normal=sep_conv_3x3:0:2,sep_conv_3x3:1:2,sep_conv_3x3:0:3,sep_conv_3x3:1:3,sep_conv_3x3:1:4,"
        "skip_connect:0:4,skip_connect:0:5,dil_conv_3x3:2:5;concat=2,3,4,5|reduce=max_pool_3x3:0:2,"
        "max_pool_3x3:1:2,skip_connect:2:3,max_pool_3x3:1:3,max_pool_3x3:0:4,skip_connect:2:4,"
        "skip_connect:2:5,max_pool_3x3:1:5;concat=2,3,4,5"
    ),
    "NAT_DARTS": (
        "normal=sep_conv_3x3:0:2,sep_conv_3x3:1:2,skip_connect:0:3,sep_conv_3x3:1:3,skip_connect:1:4,"
        "skip_connect:0:4,skip_connect:0:5,dil_conv_3x3:2:5;concat=2,3,4,5|reduce=max_pool_3x3:0:2,"
        "skip_connect:1:2,skip_connect:2:3,skip_connect:1:3,max_pool_3x3:0:4,null:2:4,skip_connect:2:5,"
        "max_pool_3x3:1:5;concat=2,3,4,5"
    ),
    "ENAS": (
        "normal=sep_conv_3x3:1:2,skip_connect:1:2,skip_connect:0:3,sep_conv_5x5:1:3,avg_pool_3x3:0:4,"
        "sep_conv_3x3:1:4,sep_conv_3x3:0:5,avg_pool_3x3:1:5,avg_pool_3x3:0:6,sep_conv_5x5:1:6;concat=2,3,"
        "4,5,6|reduce=sep_conv_5x5:0:2,avg_pool_3x3:1:2,sep_conv_3x3:1:3,avg_pool_3x3:1:3,"
        "avg_pool_3x3:1:4,sep_conv_3x3:1:4,avg_pool_3x3:1:5,sep_conv_5x5:4:5,sep_conv_5x5:0:6,"
        "sep_conv_3x3:5:6;concat=2,3,6"
    ),
    "NAT_ENAS": (
        "normal=sep_conv_3x3:1:2,skip_connect:1:2,skip_connect:0:3,sep_conv_5x5:1:3,null:0:4,"
        "sep_conv_3x3:1:4,sep_conv_3x3:0:5,avg_pool_3x3:1:5,avg_pool_3x3:0:6,sep_conv_5x5:1:6;concat=2,3,"
        "4,5,6|reduce=sep_conv_5x5:0:2,avg_pool_3x3:1:2,sep_conv_3x3:1:3,avg_pool_3x3:1:3,"
        "avg_pool_3x3:1:4,sep_conv_3x3:1:4,null:1:5,sep_conv_5x5:4:5,sep_conv_5x5:0:6,"
        "sep_conv_3x3:5:6;concat=2,3,6"
    ),
    "ResBlock": (
        "normal=null:0:2,skip_connect:1:2,null:0:3,conv_3x3:2:3,null:0:4,conv_3x3:3:4,skip_connect:2:5,"
        "skip_connect:4:5;concat=5|reduce=null:0:2,skip_connect:1:2,null:0:3,conv_3x3:2:3,null:0:4,"
        "conv_3x3:3:4,skip_connect:2:5,skip_connect:4:5;concat=5"
    ),
    "NAT_ResBlock": (
        "normal=null:0:2,skip_connect:1:2,skip_connect:0:3,conv_3x3:2:3,skip_connect:0:4,conv_3x3:3:4,"
        "skip_connect:2:5,skip_connect:4:5;concat=5|reduce=null:0:2,skip_connect:1:2,skip_connect:0:3,"
        "conv_3x3:2:3,skip_connect:0:4,conv_3x3:3:4,skip_connect:2:5,skip_connect:4:5;concat=5"
    ),
    "VGG": (
        "normal=null:0:2,skip_connect:1:2,null:0:3,conv_3x3:2:3,null:0:4,conv_3x3:3:4,null:0:5,"
        "skip_connect:4:5;concat=5|reduce=null:0:2,skip_connect:1:2,null:0:3,conv_3x3:2:3,null:0:4,"
        "conv_3x3:3:4,null:0:5,max_pool_3x3:4:5;concat=5"
    ),
    "NAT_VGG": (
        "normal=skip_connect:0:2,skip_connect:1:2,null:0:3,conv_3x3:2:3,null:0:4,conv_3x3:3:4,"
        "skip_connect:0:5,skip_connect:4:5;concat=5|reduce=skip_connect:0:2,skip_connect:1:2,null:0:3,"
        "conv_3x3:2:3,null:0:4,conv_3x3:3:4,skip_connect:0:5,skip_connect:4:5;concat=5"
    ),
    "R1": (
        "normal=dil_conv_5x5:1:2,dil_conv_5x5:1:2,dil_conv_5x5:1:3,dil_conv_5x5:2:3,sep_conv_3x3:0:4,"
        "sep_conv_3x3:3:4,skip_connect:1:5,max_pool_3x3:0:5;concat=2,3,4,5|reduce=sep_conv_5x5:0:2,"
        "max_pool_3x3:0:2,skip_connect:0:3,sep_conv_3x3:0:3,conv_3x3:0:4,max_pool_3x3:2:4,"
        "avg_pool_3x3:2:5,conv_3x3:3:5;concat=2,3,4,5"
    ),
    "NAT_R1": (
        "normal=skip_connect:1:2,dil_conv_5x5:1:2,null:1:3,dil_conv_5x5:2:3,sep_conv_3x3:0:4,"
        "sep_conv_3x3:3:4,skip_connect:1:5,max_pool_3x3:0:5;concat=2,3,4,5|reduce=sep_conv_5x5:0:2,"
        "max_pool_3x3:0:2,skip_connect:0:3,sep_conv_3x3:0:3,skip_connect:0:4,skip_connect:2:4,"
        "skip_connect:2:5,conv_3x3:3:5;concat=2,3,4,5"
    ),
    "R2": (
        "normal=max_pool_3x3:1:2,dil_conv_3x3:0:2,sep_conv_5x5:2:3,avg_pool_3x3:2:3,dil_conv_5x5:0:4,"
        "skip_connect:3:4,sep_conv_3x3:1:5,max_pool_3x3:3:5;concat=2,3,4,5|reduce=conv_3x3:1:2,"
        "avg_pool_3x3:1:2,max_pool_3x3:0:3,dil_conv_5x5:0:3,max_pool_3x3:0:4,skip_connect:0:4,"
        "dil_conv_5x5:4:5,skip_connect:4:5;concat=2,3,4,5"
    ),
    "NAT_R2": (
        "normal=max_pool_3x3:1:2,dil_conv_3x3:0:2,null:2:3,null:2:3,dil_conv_5x5:0:4,null:3:4,"
        "sep_conv_3x3:1:5,max_pool_3x3:3:5;concat=2,3,4,5|reduce=skip_connect:1:2,avg_pool_3x3:1:2,"
        "skip_connect:0:3,dil_conv_5x5:0:3,null:0:4,skip_connect:0:4,dil_conv_5x5:4:5,"
        "skip_connect:4:5;concat=2,3,4,5"
    ),
    "R3": (
        "normal=conv_3x3:0:2,skip_connect:0:2,conv_3x3:0:3,max_pool_3x3:0:3,sep_conv_5x5:1:4,"
        "sep_conv_3x3:3:4,avg_pool_3x3:4:5,avg_pool_3x3:4:5;concat=2,3,4,5|reduce=skip_connect:0:2,"
        "max_pool_3x3:0:2,sep_conv_5x5:2:3,avg_pool_3x3:0:3,skip_connect:3:4,max_pool_3x3:2:4,"
        "max_pool_3x3:1:5,sep_conv_5x5:4:5;concat=2,3,4,5"
    ),
    "NAT_R3": (
        "normal=conv_3x3:0:2,skip_connect:0:2,null:0:3,max_pool_3x3:0:3,null:1:4,null:3:4,"
        "avg_pool_3x3:4:5,null:4:5;concat=2,3,4,5|reduce=skip_connect:0:2,max_pool_3x3:0:2,"
        "sep_conv_5x5:2:3,avg_pool_3x3:0:3,null:3:4,skip_connect:2:4,max_pool_3x3:1:5,"
        "sep_conv_5x5:4:5;concat=2,3,4,5"
    ),
    "R4": (
        "normal=conv_3x3:1:2,sep_conv_3x3:1:2,conv_3x3:2:3,conv_3x3:2:3,sep_conv_3x3:3:4,conv_3x3:0:4,"
        "max_pool_3x3:0:5,max_pool_3x3:4:5;concat=2,3,4,5|reduce=sep_conv_3x3:0:2,sep_conv_5x5:1:2,"
        "skip_connect:2:3,sep_conv_3x3:2:3,sep_conv_5x5:2:4,conv_3x3:1:4,dil_conv_5x5:2:5,"
        "max_pool_3x3:4:5;concat=2,3,4,5"
    ),
    "NAT_R4": (
        "normal=conv_3x3:1:2,sep_conv_3x3:1:2,skip_connect:2:3,null:2:3,sep_conv_3x3:3:4,conv_3x3:0:4,"
        "max_pool_3x3:0:5,null:4:5;concat=2,3,4,5|reduce=sep_conv_3x3:0:2,sep_conv_5x5:1:2,"
        "skip_connect:2:3,sep_conv_3x3:2:3,skip_connect:2:4,conv_3x3:1:4,null:2:5,"
        "skip_connect:4:5;concat=2,3,4,5"
    ),
    "R5": (
        "normal=skip_connect:0:2,max_pool_3x3:0:2,max_pool_3x3:2:3,dil_conv_5x5:0:3,max_pool_3x3:2:4,"
        "conv_3x3:2:4,conv_3x3:0:5,sep_conv_5x5:2:5;concat=2,3,4,5|reduce=dil_conv_5x5:0:2,"
        "avg_pool_3x3:1:2,sep_conv_5x5:0:3,avg_pool_3x3:2:3,conv_3x3:0:4,dil_conv_5x5:0:4,"
        "sep_conv_3x3:0:5,skip_connect:4:5;concat=2,3,4,5"
    ),
    "NAT_R5": (
        "normal=skip_connect:0:2,max_pool_3x3:0:2,null:2:3,dil_conv_5x5:0:3,null:2:4,conv_3x3:2:4,"
        "conv_3x3:0:5,sep_conv_5x5:2:5;concat=2,3,4,5|reduce=dil_conv_5x5:0:2,avg_pool_3x3:1:2,"
        "sep_conv_5x5:0:3,avg_pool_3x3:2:3,conv_3x3:0:4,null:0:4,skip_connect:0:5,"
        "skip_connect:4:5;concat=2,3,4,5"
    ),
    "NATv2_DARTS": (
        "normal=sep_conv_3x3:0:2,sep_conv_3x3:1:2,null:0:3,skip_connect:1:3,dil_conv_3x3:1:4,"
        "skip_connect:0:4,skip_connect:0:5,dil_conv_3x3:2:5;concat=2,3,4,5|reduce=avg_pool_3x3:0:2,"
        "max_pool_3x3:1:2,skip_connect:2:3,skip_connect:1:3,avg_pool_3x3:0:4,skip_connect:2:4,"
        "skip_connect:2:5,max_pool_3x3:1:5;concat=2,3,4,5"
    ),
    "NATv2_ENAS": (
        "normal=sep_conv_3x3:1:2,null:1:2,skip_connect:0:3,sep_conv_5x5:1:3,avg_pool_3x3:0:4,"
        "sep_conv_3x3:1:4,sep_conv_3x3:0:5,avg_pool_3x3:1:5,skip_connect:0:6,sep_conv_3x3:1:6;concat=2,3,"
        "4,5,6|reduce=sep_conv_3x3:0:2,avg_pool_3x3:1:2,sep_conv_3x3:1:3,avg_pool_3x3:1:3,"
        "avg_pool_3x3:1:4,avg_pool_3x3:1:4,avg_pool_3x3:1:5,sep_conv_5x5:4:5,sep_conv_5x5:0:6,"
        "max_pool_3x3:5:6;concat=2,3,6"
    ),
    "NATv2_ResBlock": (
        "normal=skip_connect:0:2,skip_connect:1:2,skip_connect:0:3,conv_3x3:2:3,skip_connect:0:4,"
        "conv_3x3:3:4,skip_connect:2:5,skip_connect:4:5;concat=5|reduce=skip_connect:0:2,"
        "skip_connect:1:2,skip_connect:0:3,conv_3x3:2:3,skip_connect:0:4,sep_conv_3x3:3:4,"
        "skip_connect:2:5,skip_connect:4:5;concat=5"
    ),
    "NATv2_VGG": (
        "normal=skip_connect:0:2,skip_connect:1:2,skip_connect:0:3,conv_3x3:2:3,null:0:4,"
        "sep_conv_3x3:3:4,skip_connect:0:5,skip_connect:4:5;concat=5|reduce=skip_connect:0:2,"
        "skip_connect:1:2,skip_connect:0:3,conv_3x3:2:3,null:0:4,sep_conv_3x3:3:4,skip_connect:0:5,"
        "max_pool_3x3:4:5;concat=5"
    ),
    "Mobilenetv2": (
        "normal=null:0:2,conv_1x1:1:2,null:0:3,sep_conv_3x3:2:3,null:0:4,conv_1x1:3:4,skip_connect:1:5,"
        "skip_connect:4:5;concat=5|reduce=null:0:2,conv_1x1:1:2,null:0:3,sep_conv_3x3:2:3,null:0:4,"
        "conv_1x1:3:4,null:0:5,skip_connect:4:5;concat=5"
    ),
    "NAT_MobileNetv2": (
        "normal=null:0:2,conv_1x1:1:2,null:0:3,sep_conv_3x3:2:3,skip_connect:0:4,conv_1x1:3:4,"
        "skip_connect:1:5,skip_connect:4:5;concat=5|reduce=null:0:2,skip_connect:1:2,skip_connect:0:3,"
        "sep_conv_3x3:2:3,null:0:4,conv_1x1:3:4,null:0:5,skip_connect:4:5;concat=5"
    ),
    "NAONet": (
        "normal=conv_3x3:0:2,avg_pool_5x5:1:2,conv_3x3:1:3,conv_1x3_3x1:2:3,conv_1x1:0:4,conv_3x3:1:4,"
        "conv_1x3_3x1:0:5,conv_3x3:4:5,conv_3x3:0:6,skip_connect:1:6;concat=3,5,6|reduce=conv_3x3:0:2,"
        "avg_pool_2x2:1:2,conv_1x1:0:3,avg_pool_3x3:0:3,max_pool_2x2:0:4,conv_1x7_7x1:1:4,"
        "avg_pool_3x3:0:5,conv_1x1:2:5,conv_3x3:0:6,max_pool_3x3:1:6;concat=3,4,5,6"
    ),
    "NAT_NAONet": (
        "normal=conv_3x3:0:2,avg_pool_5x5:1:2,null:1:3,conv_1x3_3x1:2:3,conv_1x1:0:4,skip_connect:1:4,"
        "conv_1x3_3x1:0:5,conv_3x3:4:5,conv_3x3:0:6,skip_connect:1:6;concat=3,5,6|reduce=null:0:2,"
        "avg_pool_3x3:1:2,conv_1x1:0:3,avg_pool_3x3:0:3,skip_connect:0:4,conv_1x7_7x1:1:4,"
        "avg_pool_3x3:0:5,skip_connect:2:5,conv_3x3:0:6,max_pool_3x3:1:6;concat=3,4,5,6"
    ),
    "NATv2_NAONet": (
        "normal=conv_3x3:0:2,avg_pool_5x5:1:2,conv_3x3:1:3,conv_1x3_3x1:2:3,max_pool_3x3:0:4,"
        "conv_3x3:1:4,max_pool_3x3:0:5,conv_3x3:4:5,sep_conv_3x3:0:6,skip_connect:1:6;concat=3,5,"
        "6|reduce=conv_3x3:0:2,skip_connect:1:2,avg_pool_3x3:0:3,avg_pool_3x3:0:3,max_pool_2x2:0:4,"
        "conv_1x7_7x1:1:4,skip_connect:0:5,skip_connect:2:5,max_pool_3x3:0:6,max_pool_3x3:1:6;concat=3,4,"
        "5,6"
    ),
    "DARTS_V1": (
        "normal=sep_conv_3x3:1:2,sep_conv_3x3:0:2,skip_connect:0:3,sep_conv_3x3:1:3,skip_connect:0:4,"
        "sep_conv_3x3:1:4,sep_conv_3x3:0:5,skip_connect:2:5;concat=2,3,4,5|reduce=max_pool_3x3:0:2,"
        "max_pool_3x3:1:2,skip_connect:2:3,max_pool_3x3:0:3,max_pool_3x3:0:4,skip_connect:2:4,"
        "skip_connect:2:5,avg_pool_3x3:0:5;concat=2,3,4,5"
    ),
    "DARTS_V2": (
        "normal=sep_conv_3x3:0:2,sep_conv_3x3:1:2,sep_conv_3x3:0:3,sep_conv_3x3:1:3,sep_conv_3x3:1:4,"
        "skip_connect:0:4,skip_connect:0:5,dil_conv_3x3:2:5;concat=2,3,4,5|reduce=max_pool_3x3:0:2,"
        "max_pool_3x3:1:2,skip_connect:2:3,max_pool_3x3:1:3,max_pool_3x3:0:4,skip_connect:2:4,"
        "skip_connect:2:5,max_pool_3x3:1:5;concat=2,3,4,5"
    ),
    "NASNet": (
        "normal=sep_conv_5x5:1:2,sep_conv_3x3:0:2,sep_conv_5x5:0:3,sep_conv_3x3:0:3,avg_pool_3x3:1:4,"
        "skip_connect:0:4,avg_pool_3x3:0:5,avg_pool_3x3:0:5,sep_conv_3x3:1:6,skip_connect:1:6;concat=2,3,"
        "4,5,6|reduce=sep_conv_5x5:1:2,sep_conv_7x7:0:2,max_pool_3x3:1:3,sep_conv_7x7:0:3,"
        "avg_pool_3x3:1:4,sep_conv_5x5:0:4,skip_connect:3:5,avg_pool_3x3:2:5,sep_conv_3x3:2:6,"
        "max_pool_3x3:1:6;concat=4,5,6"
    ),
    "AmoebaNet": (
        "normal=avg_pool_3x3:0:2,max_pool_3x3:1:2,sep_conv_3x3:0:3,sep_conv_5x5:2:3,sep_conv_3x3:0:4,"
        "avg_pool_3x3:3:4,sep_conv_3x3:1:5,skip_connect:1:5,skip_connect:0:6,avg_pool_3x3:1:6;concat=4,5,"
        "6|reduce=avg_pool_3x3:0:2,sep_conv_3x3:1:2,max_pool_3x3:0:3,sep_conv_7x7:2:3,sep_conv_7x7:0:4,"
        "avg_pool_3x3:1:4,max_pool_3x3:0:5,max_pool_3x3:1:5,conv_7x1_1x7:0:6,sep_conv_3x3:5:6;concat=3,4,"
        "6"
    ),
    "PNASNet": (
        "normal=sep_conv_5x5:0:2,max_pool_3x3:0:2,sep_conv_7x7:1:3,max_pool_3x3:1:3,sep_conv_5x5:1:4,"
        "sep_conv_3x3:1:4,sep_conv_3x3:4:5,max_pool_3x3:1:5,sep_conv_3x3:0:6,skip_connect:1:6;concat=2,3,"
        "4,5,6|reduce=sep_conv_5x5:0:2,max_pool_3x3:0:2,sep_conv_7x7:1:3,max_pool_3x3:1:3,"
        "sep_conv_5x5:1:4,sep_conv_3x3:1:4,sep_conv_3x3:4:5,max_pool_3x3:1:5,sep_conv_3x3:0:6,"
        "skip_connect:1:6;concat=2,3,4,5,6"
    ),
}

TWO_STEP_OK = "normal=skip_connect:0:2,conv_3x3:1:2,sep_conv_3x3:0:3,null:2:3;concat=2,3|" \
              "reduce=max_pool_3x3:0:2,avg_pool_3x3:1:2,skip_connect:2:3,conv_1x1:1:3;concat=3"  # fmt: skip


def cell(edges, concat="all"):
    return Cell(edges, concat)


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("name", ALL_NAMES)
def test_round_trips_of_every_registered_genotype(name: str) -> None:
    g = genotypes.get(name)
    assert isinstance(g, Genotype)
    for back in (
        Genotype.parse(str(g)),
        Genotype.from_json(g.to_json()),
        Genotype.from_dict(json.loads(g.to_json())),
        Genotype.from_darts(g.to_darts()),
        Genotype.from_darts(str(g.to_darts())),
        Genotype.from_darts(g.to_darts()._asdict()),
    ):
        assert back == g
        assert hash(back) == hash(g)
        assert back.digest() == g.digest()
        assert str(back) == str(g)
    assert repr(g) == f"Genotype.parse({str(g)!r})"
    # the concat survives every format (ENAS/NAONet cells are loose-end, not fully-concat)
    assert Genotype.from_darts(g.to_darts()).reduce.concat == g.reduce.concat


def test_digest_is_stable_literal() -> None:
    g = genotypes.get("DARTS_V2")
    assert g.digest() == DARTS_V2_DIGEST
    assert Genotype.from_darts(DARTS_V2_REPR).digest() == DARTS_V2_DIGEST
    assert genotypes.get("ENAS").digest() != DARTS_V2_DIGEST
    assert len({genotypes.get(n).digest() for n in ALL_NAMES}) == len({genotypes.get(n) for n in ALL_NAMES})


def test_darts_is_darts_v2_and_equals_the_published_pair_format() -> None:
    assert genotypes.get("DARTS") == genotypes.get("DARTS_V2")
    g = Genotype.from_darts(DARTS_V2_REPR)
    assert g == genotypes.get("DARTS_V2")
    assert g.normal.concat == (2, 3, 4, 5) and g.reduce.concat == (2, 3, 4, 5)
    assert g.num_edges == 16 and g.steps == 4
    # pair k sits on node k // 2 + 2
    assert g.normal.edges[7] == Edge("dil_conv_3x3", 2, 5)
    assert g.reduce.edges[2] == Edge("skip_connect", 2, 3)
    # the same from the namedtuple with real range objects
    nt = DartsGenotype(
        normal=[(o, s) for o, s in g.normal.to_pairs()], normal_concat=range(2, 6),
        reduce=[(o, s) for o, s in g.reduce.to_pairs()], reduce_concat=range(2, 6),
    )  # fmt: skip
    assert Genotype.from_darts(nt) == g
    assert genotypes.get("DARTS_V1") != g


def test_darts_none_maps_to_null() -> None:
    text = DARTS_V2_REPR.replace("('skip_connect', 0), ('skip_connect', 0)", "('none', 0), ('none', 0)")
    g = Genotype.from_darts(text)
    assert g.normal.ops[5:7] == ("null", "null")
    d = g.to_darts()
    assert d.normal[5] == ("none", 0)  # written back in DARTS's spelling
    assert Genotype.from_darts(d) == g


def test_order_independence_across_nodes() -> None:
    base = genotypes.get("DARTS_V2").normal
    rng = random.Random(0)
    by_node = {n: [e for e in base.edges if e.dst == n] for n in range(2, 6)}
    for _ in range(20):
        # interleave the nodes' edge lists in a random order, keeping each node's own two edges in order
        queues = {n: list(es) for n, es in by_node.items()}
        shuffled = []
        while any(queues.values()):
            n = rng.choice([k for k, q in queues.items() if q])
            shuffled.append(tuple(queues[n].pop(0)))
        c = Cell(shuffled, base.concat)
        assert c == base and hash(c) == hash(base) and str(c) == str(base)
    reversed_nodes = [tuple(e) for n in range(5, 1, -1) for e in by_node[n]]
    assert Cell(reversed_nodes, [5, 4, 3, 2]) == base  # concat order does not matter either


def test_concat_modes_and_output_mode() -> None:
    enas = genotypes.get("ENAS")
    assert Cell(enas.reduce.edges, "loose_end").concat == (2, 3, 6)
    assert enas.reduce.concat == (2, 3, 6)
    assert enas.reduce.output_mode == "loose_end"
    darts = genotypes.get("DARTS_V2")
    assert darts.normal.output_mode == "fully_concat" and darts.reduce.output_mode == "fully_concat"
    assert Cell(darts.normal.edges, "all").concat == (2, 3, 4, 5)
    assert Cell(darts.normal.edges, [2, 5]).output_mode == "custom"
    assert Cell(enas.reduce.edges, "all").output_mode == "fully_concat"


# ------------------------------------------------------------------------------------------------ validation

GOOD_EDGES = [("sep_conv_3x3", 0, 2), ("skip_connect", 1, 2), ("conv_3x3", 0, 3), ("null", 2, 3)]


def _err(exc_type, fn, *fields: str):
    with pytest.raises(exc_type) as info:
        fn()
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    for f in fields:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def test_unknown_op_lists_allowed_ops() -> None:
    msg = _err(InvalidOpError, lambda: Cell([("sep_conv_9x9", 0, 2), ("skip_connect", 1, 2)]),
               "edges[0]", "sep_conv_9x9", "allowed")  # fmt: skip
    for o in ops.OPS:
        assert o in msg
    assert issubclass(InvalidOpError, GenotypeError)
    _err(InvalidOpError, lambda: Cell([(3, 0, 2), ("skip_connect", 1, 2)]), "edges[0]")


@pytest.mark.parametrize(
    "edges, fields",
    [
        ([("skip_connect", 2, 2), ("skip_connect", 1, 2)], ["edges[0].from", "from < to"]),
        ([("skip_connect", 0, 2), ("skip_connect", 3, 2)], ["edges[1].from", "from < to"]),
        ([("skip_connect", -1, 2), ("skip_connect", 1, 2)], ["edges[0].from", "0 <= from"]),
        ([("skip_connect", 0, 2), ("skip_connect", 1, 4)], ["edges[1].to", "allowed: 2..2"]),
        ([("skip_connect", 0, 1), ("skip_connect", 1, 2)], ["edges[0].to", "allowed: 2..2"]),
        ([("skip_connect", 0, 2), ("skip_connect", 1, 2), ("skip_connect", 0, 2), ("skip_connect", 1, 3)],
         ["edges", "exactly 2 inputs", "node 2 has 3", "node 3 has 1"]),
        ([("skip_connect", 0, 2), ("skip_connect", 1, 2), ("skip_connect", 0, 3)], ["edges", "3 edges", "2 edges"]),
        ([], ["edges", "empty"]),
        ([("skip_connect", 0, 2)], ["edges", "1 edges"]),
        ([("skip_connect", "a", 2), ("skip_connect", 1, 2)], ["edges[0].from", "integer"]),
        ([("skip_connect", 0, 2.5), ("skip_connect", 1, 2)], ["edges[0].to", "integer"]),
        ([("skip_connect", True, 2), ("skip_connect", 1, 2)], ["edges[0].from", "integer", "True"]),
        ([("skip_connect", 0, 2), ("skip_connect", False, 2)], ["edges[1].from", "integer", "False"]),
        ([("skip_connect", 0, 2), ("skip_connect", 1)], ["edges[1]", "(op, from, to)"]),
        ([("skip_connect", 0, 2), "skip_connect:1:2"], ["edges[1]", "(op, from, to)"]),
        ("skip_connect:0:2", ["edges", "list of (op, from, to)"]),
        (None, ["edges"]),
        ([("skip_connect", 0, 2), ("skip_connect", 1, 2)] * 9, ["edges", "at most 8"]),
    ],
)
def test_bad_edges(edges, fields) -> None:
    _err(GenotypeError, lambda: Cell(edges, "all"), *fields)


@pytest.mark.parametrize(
    "concat, fields",
    [
        ([2, 4], ["concat", "node 4 out of range", "allowed: 2..3"]),
        ([1, 2], ["concat", "node 1 out of range", "allowed: 2..3"]),
        ([2, 2], ["concat", "duplicate"]),
        ([], ["concat", "empty"]),
        ([2, True], ["concat", "integer"]),
        ([2, "3"], ["concat", "integer"]),
        ("some", ["concat", "'all' or 'loose_end'"]),
        (None, ["concat", "'all' or 'loose_end'"]),
    ],
)
def test_bad_concat(concat, fields) -> None:
    _err(GenotypeError, lambda: Cell(GOOD_EDGES, concat), *fields)


def test_float_integers_are_accepted_as_indices() -> None:
    c = Cell([("sep_conv_3x3", 0.0, 2.0), ("skip_connect", 1, 2)], [2.0])
    assert c.edges[0] == Edge("sep_conv_3x3", 0, 2) and type(c.edges[0].src) is int and c.concat == (2,)


def test_steps_mismatch() -> None:
    two = Cell(GOOD_EDGES)
    one = Cell(GOOD_EDGES[:2])
    _err(GenotypeError, lambda: Genotype(two, one), "reduce", "1 intermediate", "2", "same number of steps")
    _err(GenotypeError, lambda: Genotype.parse(TWO_STEP_OK.split("|")[0] + "|reduce=skip_connect:0:2,null:1:2;concat=2"),
         "reduce", "same number of steps")  # fmt: skip


@pytest.mark.parametrize(
    "text, fields",
    [
        ("", ["genotype", "normal=...|reduce=..."]),
        ("normal=skip_connect:0:2,skip_connect:1:2;concat=2", ["genotype", "normal=...|reduce=..."]),
        (TWO_STEP_OK.replace(";concat=2,3|", "|"), ["normal", "op:from:to"]),
        (TWO_STEP_OK.replace("conv_3x3:1:2", "conv_3x3:1"), ["normal.edges[1]", "op:from:to"]),
        (TWO_STEP_OK.replace("conv_3x3:1:2", "conv_3x3:1:2:4"), ["normal.edges[1]", "op:from:to"]),
        (TWO_STEP_OK.replace("conv_3x3:1:2", "conv_3x3:x:2"), ["normal.edges[1].from", "integer"]),
        (TWO_STEP_OK.replace("conv_3x3:1:2", "conv_3x3:1:2.0"), ["normal.edges[1].to", "integer"]),
        (TWO_STEP_OK.replace("conv_3x3:1:2", "conv_3x3:1:9999999"), ["normal.edges[1].to", "integer"]),
        (TWO_STEP_OK.replace("conv_3x3:1:2", "conv_9x9:1:2"), ["normal.edges[1]", "conv_9x9", "allowed"]),
        (TWO_STEP_OK.replace("concat=3", "concat=3,x"), ["reduce.concat", "integer"]),
        (TWO_STEP_OK.replace("concat=3", "concat="), ["reduce.concat", "empty"]),
        (TWO_STEP_OK.replace("concat=3", "concat=7"), ["reduce.concat", "allowed: 2..3"]),
        (TWO_STEP_OK.replace(",null:2:3", ""), ["normal.edges", "3 edges"]),
        (TWO_STEP_OK.replace("normal=", "normal=,"), ["normal.edges[0]", "op:from:to"]),
    ],
)
def test_malformed_compact_strings(text: str, fields) -> None:
    _err(GenotypeError, lambda: Genotype.parse(text), *fields)


def test_compact_string_is_whitespace_tolerant() -> None:
    g = Genotype.parse(TWO_STEP_OK)
    assert Genotype.parse("  " + TWO_STEP_OK.replace(",", " , ") + "\n") == g
    assert g.reduce.concat == (3,) and g.normal.concat == (2, 3)


@pytest.mark.parametrize(
    "text, fields",
    [
        ("{not json", ["genotype", "JSON"]),
        ("", ["genotype", "JSON"]),
        (None, ["genotype", "JSON"]),
        ("[1, 2]", ["genotype", "mapping"]),
        ('{"normal": {"edges": []}}', ["genotype", "missing", "reduce"]),
        ('{"normal": {"edges": [["skip_connect", 0, 2], ["null", 1, 2]]}, "reduce": {"edgs": []}}',
         ["reduce", "'edges'"]),
        ('{"normal": {"edges": [["skip_connect", 0, 2], ["null", 1, 2]]}, "reduce": [1]}', ["reduce", "mapping"]),
    ],
)
def test_bad_json(text, fields) -> None:
    _err(GenotypeError, lambda: Genotype.from_json(text), *fields)


@pytest.mark.parametrize(
    "text",
    [
        b"\xff\xfe\xfa",  # bytes that are not UTF-8/16/32: UnicodeDecodeError
        "[" * 100_000,  # nesting deeper than the recursion limit: RecursionError
        "9" * 5000,  # an integer over Python's 4300-digit str->int limit: plain ValueError
    ],
    ids=["bad-bytes", "deep-nesting", "huge-int"],
)
def test_from_json_wraps_every_decoder_failure(text) -> None:
    """BUG: Genotype.from_json only catches TypeError/JSONDecodeError; json.loads raises other errors too."""
    with pytest.raises(GenotypeError, match="JSON"):
        Genotype.from_json(text)


def test_darts_repr_with_huge_range_raises_genotype_error() -> None:
    """BUG: _parse_darts_repr expands ``range(a, b)`` with int() outside its try block (ValueError escapes for
    numbers over 4300 digits; a range like range(0, 10**10) would even be materialised as a list)."""
    text = DARTS_V2_REPR.replace("normal_concat=range(2, 6)", "normal_concat=range(2, " + "9" * 5000 + ")")
    with pytest.raises(GenotypeError):
        Genotype.from_darts(text)


@pytest.mark.parametrize(
    "obj, fields",
    [
        ("Genotype(normal=[('sep_conv_3x3', 0)", ["DARTS"]),
        ("Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=__import__('os'))", ["DARTS"]),
        ("Genotype([('sep_conv_3x3', 0)])", ["DARTS"]),
        ("Fenotype(normal=[])", ["DARTS"]),
        ({"normal": [("skip_connect", 0)]}, ["missing", "reduce"]),
        ({"normal": [("skip_connect", 0, 2), ("skip_connect", 1)], "reduce": []}, ["normal[1]", "(op, from, to)"]),
        ({"normal": [("skip_connect", 0), ("skip_connect", 1, 2)], "reduce": []}, ["normal[1]", "(op, from)"]),
        ({"normal": "skip_connect", "reduce": []}, ["normal", "(op, from)"]),
        (42, ["DARTS"]),
    ],
)
def test_bad_darts(obj, fields) -> None:
    _err(GenotypeError, lambda: Genotype.from_darts(obj), *fields)


# ------------------------------------------------------------------------------------------------ with_ops


def test_with_ops_keeps_graph() -> None:
    g = genotypes.get("ENAS")
    new = ["null"] * g.num_edges
    h = g.with_ops(new)
    assert h.ops == tuple(new)
    assert [(e.src, e.dst) for e in h.edges] == [(e.src, e.dst) for e in g.edges]
    assert h.normal.concat == g.normal.concat and h.reduce.concat == g.reduce.concat == (2, 3, 6)
    assert g.with_ops(g.ops) == g
    c = g.normal.with_ops(["skip_connect"] * len(g.normal.edges))
    assert c.concat == g.normal.concat and c.ops == ("skip_connect",) * 10
    assert g.with_ops(["none"] * g.num_edges) == h  # aliases accepted


@pytest.mark.parametrize("n", [0, 19, 21])
def test_with_ops_rejects_wrong_length(n: int) -> None:
    g = genotypes.get("ENAS")
    _err(GenotypeError, lambda: g.with_ops(["null"] * n), "ops", "20")
    _err(GenotypeError, lambda: g.normal.with_ops(["null"] * (n // 2 + 11)), "ops", "10")


def test_with_ops_rejects_string_and_unknown_op() -> None:
    g = genotypes.get("DARTS_V2")
    _err(GenotypeError, lambda: g.with_ops("x" * 16), "ops")
    _err(InvalidOpError, lambda: g.with_ops(["conv_9x9"] * 16), "conv_9x9", "allowed")


# ------------------------------------------------------------------------------------------------ registry


def test_registry_lookup() -> None:
    assert genotypes.get("darts_v2") == genotypes.get("DARTS_V2") == genotypes.get("DaRtS")
    assert genotypes.get("mobilenetv2") == genotypes.get("MobileNetV2")
    assert genotypes.list() == list(ALL_NAMES)
    assert ALL_NAMES[: len(genotypes.BASE_NAMES)] == genotypes.BASE_NAMES
    msg = _err(GenotypeError, lambda: genotypes.get("nope"), "nope", "registered")
    for n in ALL_NAMES:
        assert n in msg
    _err(GenotypeError, lambda: genotypes.get(3), "registered")


def test_registry_equals_the_published_genotypes() -> None:
    """Every genotype of the published data file (NAT.md's genotypes.json, copied below) is registered, equal."""
    rename = {"Mobilenetv2": "MobileNetV2", "NAT_MobileNetv2": "NAT_MobileNetV2"}
    published = {rename.get(k, k): v for k, v in PUBLISHED_GENOTYPES.items()}
    # the NAT++ paper's MobileNetV2 result is NAT's (NATv2_MobileNetv2 = NAT_MobileNetv2 in NAT++'s genotypes.py)
    published["NATv2_MobileNetV2"] = published["NAT_MobileNetV2"]
    assert set(ALL_NAMES) == set(published)
    for name, text in published.items():
        g = genotypes.get(name)
        assert str(g) == text, name
        assert g == Genotype.parse(text), name


def test_registry_content() -> None:
    assert genotypes.get("DARTS_V2").steps == 4 and genotypes.get("ENAS").steps == 5
    assert genotypes.get("NAONet").steps == 5
    # every node of ENAS's normal cell is a loose end: both modes coincide and fully_concat wins
    enas = genotypes.get("ENAS").normal
    assert enas.loose_ends() == enas.concat == (2, 3, 4, 5, 6) and enas.output_mode == "fully_concat"
    modes = {n: (genotypes.get(n).normal.output_mode, genotypes.get(n).reduce.output_mode) for n in genotypes.BASE_NAMES}
    assert modes["VGG"] == modes["ResBlock"] == modes["MobileNetV2"] == ("loose_end", "loose_end")
    assert modes["NASNet"] == ("fully_concat", "loose_end")
    assert modes["PNASNet"] == modes["R1"] == ("fully_concat", "fully_concat")


def test_resolve(tmp_path) -> None:
    g = genotypes.get("DARTS_V2")
    assert genotypes.resolve(g) is g
    assert genotypes.resolve("darts_v2") == g
    assert genotypes.resolve(str(g)) == g
    assert genotypes.resolve(DARTS_V2_REPR) == g
    assert genotypes.resolve(g.to_json()) == g
    p = tmp_path / "g.json"
    p.write_text(g.to_json(indent=2))
    assert genotypes.resolve(p) == g
    assert genotypes.resolve(str(p)) == g
    pairs = tmp_path / "pairs.json"  # the DARTS pair format as JSON
    pairs.write_text(json.dumps(g.to_darts()._asdict()))
    assert genotypes.resolve(pairs) == g
    _err(GenotypeError, lambda: genotypes.resolve(str(tmp_path / "missing.json")), "missing.json")
    _err(GenotypeError, lambda: genotypes.resolve("NOPE"), "registered", "DARTS_V2")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    _err(GenotypeError, lambda: genotypes.resolve(bad), "JSON")


# ------------------------------------------------------------------------------------------------ fuzzing

_junk = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 12) | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.sampled_from([*ops.OPS, "none", "normal", "reduce", "edges", "concat", "all", "loose_end"]),
    lambda inner: st.lists(inner, max_size=6) | st.tuples(inner, inner, inner)
    | st.dictionaries(st.sampled_from(["normal", "reduce", "edges", "concat", "normal_concat", "reduce_concat"])
                      | st.text(max_size=5), inner, max_size=4),
    max_leaves=25,
)  # fmt: skip
_junk_text = st.text(max_size=200) | st.builds(
    lambda a, b: a + b, st.sampled_from(["normal=", "Genotype(normal=", "{\"normal\": ", "DartsGenotype("]),
    st.text(alphabet="[](){}:;,=|'\"0123456789 -_.abcnormlskip", max_size=80),
)


def _only_genotype_error(fn, arg) -> None:
    try:
        out = fn(arg)
    except GenotypeError:
        return
    assert isinstance(out, (Genotype, Cell))


@settings(max_examples=200, deadline=None)
@given(junk=_junk | _junk_text)
def test_fuzz_junk_only_raises_genotype_error(junk) -> None:
    for fn in (Genotype.parse, Genotype.from_json, Genotype.from_dict, Genotype.from_darts, Cell):
        _only_genotype_error(fn, junk)


@settings(max_examples=200, deadline=None)
@given(edges=_junk, concat=_junk)
def test_fuzz_cell_constructor(edges, concat) -> None:
    try:
        c = Cell(edges, concat)
    except GenotypeError:
        return
    assert Cell.parse(str(c)) == c


@st.composite
def cells(draw, steps: int) -> Cell:
    op_names = sorted(ops.OPS)
    edges = []
    for node in range(2, steps + 2):
        for _ in range(2):
            edges.append((draw(st.sampled_from(op_names)), draw(st.integers(0, node - 1)), node))
    nodes = list(range(2, steps + 2))
    concat = draw(st.lists(st.sampled_from(nodes), min_size=1, unique=True))
    return Cell(draw(st.permutations(edges)) if draw(st.booleans()) else edges, concat)


@st.composite
def genos(draw) -> Genotype:
    steps = draw(st.integers(1, 6))
    return Genotype(draw(cells(steps)), draw(cells(steps)))


@settings(max_examples=200, deadline=None)
@given(g=genos())
def test_fuzz_valid_genotypes_round_trip(g: Genotype) -> None:
    assert Genotype.parse(str(g)) == g
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_darts(g.to_darts()) == g
    assert Genotype.from_darts(str(g.to_darts())) == g
    assert hash(Genotype.parse(str(g))) == hash(g)
    assert Genotype.parse(str(g)).digest() == g.digest()
    assert g.with_ops(g.ops) == g
    for c in g.cells:
        assert all(e.src < e.dst for e in c.edges)
        assert [e.dst for e in c.edges] == sorted(e.dst for e in c.edges)


_mut_chars = st.characters() | st.sampled_from(list(":,;=|0123456789-_ \n") + ["normal", "reduce", "concat"])


@settings(max_examples=200, deadline=None)
@given(g=genos(), data=st.data())
def test_fuzz_mutated_compact_strings(g: Genotype, data) -> None:
    text = str(g)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        ch = data.draw(_mut_chars)
        if kind == "delete":
            text = text[:i] + text[i + 1:]
        elif kind == "insert":
            text = text[:i] + ch + text[i:]
        else:
            text = text[:i] + ch + text[i + 1:]
    try:
        out = Genotype.parse(text)
    except GenotypeError:
        return
    assert isinstance(out, Genotype)
    assert Genotype.parse(str(out)) == out
    assert out.normal.steps == out.reduce.steps
