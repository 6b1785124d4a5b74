"""Dataset source readers: raw files of one dataset family -> one table (path, label, group, split).

Each module has its ``CHALLENGES`` and one ``read_*`` function; a dataset config names its
reader directly (``reader._target_`` in ``conf/dataset/<name>.yaml``), so there is no registry
here: Hydra turns the config into the call, and an unknown dataset is an unknown config option.
"""
