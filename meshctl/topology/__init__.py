"""The capability graph, topology files and the SLA solver."""

from meshctl.topology.graph import CapabilityGraph
from meshctl.topology.loader import apply_topology, load_topology, parse_topology
from meshctl.topology.solver import CandidateVerdict, SolveResult, solve

__all__ = [
    "CandidateVerdict",
    "CapabilityGraph",
    "SolveResult",
    "apply_topology",
    "load_topology",
    "parse_topology",
    "solve",
]
