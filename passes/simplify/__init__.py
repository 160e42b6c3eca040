"""Simplification passes, each a Graph -> Graph function (the O1 pipeline runs them in
this order): decompose_free, fold, algebra, cse, dce."""
from passes.simplify.algebra import algebra
from passes.simplify.cse import cse
from passes.simplify.dce import dce
from passes.simplify.expand import decompose_free
from passes.simplify.fold import fold

__all__ = ["algebra", "cse", "dce", "decompose_free", "fold"]
