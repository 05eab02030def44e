"""Pure computations under the AnnData runners of ``tmt.tl``: arrays and tables in, small result objects out."""
