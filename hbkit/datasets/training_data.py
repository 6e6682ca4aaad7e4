"""Real training and validation data, all as :class:`~hbkit.parallel.ParallelDataset` (PROTOCOL §1.2).

This module gathers the names of the modules that do the work, so that
``from hbkit.datasets.training_data import load_mmarco, read_parallel_file`` keeps working:

- :mod:`hbkit.datasets.files`: your own parallel corpus, text pairs or image–caption
  pairs (:func:`read_parallel_file`, :func:`write_parallel_file`);
- :mod:`hbkit.datasets.mmarco`: mMARCO training triples (:func:`load_mmarco`);
- :mod:`hbkit.datasets.squadshifts`: the SQuADShifts validation set (:func:`load_squadshifts`);
- :mod:`hbkit.datasets.summary`: a table of a training mixture (:func:`mix_summary`).
"""
from __future__ import annotations

from hbkit.datasets.files import COLUMNS, IMAGE_COLUMNS, REQUIRED_COLUMNS, read_parallel_file, write_parallel_file
from hbkit.datasets.mmarco import MMARCO_LANGUAGES, MMARCO_REPO, PAPER_MMARCO_LANGUAGES, load_mmarco
from hbkit.datasets.squadshifts import (SQUADSHIFTS_FILES, SQUADSHIFTS_SHA256, SQUADSHIFTS_SUBSETS, SQUADSHIFTS_URL,
                                        load_squadshifts)
from hbkit.datasets.summary import mix_summary

__all__ = ["REQUIRED_COLUMNS", "COLUMNS", "IMAGE_COLUMNS", "read_parallel_file", "write_parallel_file",
           "MMARCO_LANGUAGES", "PAPER_MMARCO_LANGUAGES", "MMARCO_REPO", "load_mmarco", "SQUADSHIFTS_SUBSETS",
           "SQUADSHIFTS_URL", "SQUADSHIFTS_FILES", "SQUADSHIFTS_SHA256", "load_squadshifts", "mix_summary"]
