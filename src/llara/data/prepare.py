"""One call from a :class:`~llara.config.DataConfig` to a prepared folder on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llara.config import DataConfig
from llara.data.dataset import PreparedData, is_prepared_folder, write_prepared
from llara.data.protocol import ProtocolParams, Samples, build_sample_arrays
from llara.data.readers import read_source
from llara.errors import LlaraError
from llara.paths import check_replaceable

#: the source name of the LLaRA authors' processed pickles (converted, not re-split)
AUTHORS_SOURCE = "llara"


def protocol_params(config: DataConfig) -> ProtocolParams:
    """The protocol knobs of a data config."""
    return ProtocolParams(
        seed=config.seed,
        history_len=config.history_len,
        min_history=config.min_history,
        num_candidates=config.num_candidates,
        split=tuple(config.split),
        split_by=config.split_by,
        val_windows=config.val_windows,
    )


def _samples(config: DataConfig, params: ProtocolParams) -> tuple[Samples, str]:
    """The source's samples and domain (the raw interactions are freed on return)."""
    if config.source == AUTHORS_SOURCE:
        if config.val_windows > 1:
            raise LlaraError(
                f"source {AUTHORS_SOURCE!r} keeps the authors' validation rows; val_windows needs a raw interaction log"
            )
        if config.split_by != "users":
            raise LlaraError(
                f"source {AUTHORS_SOURCE!r} keeps the authors' user split; split_by {config.split_by!r} needs a raw "
                "interaction log (e.g. movielens)"
            )
        from llara.data.llara_files import convert_authors_files

        return convert_authors_files(config.path, params, **config.options)
    data = read_source(config.source, config.path, config.options)
    return build_sample_arrays(data, params), data.domain


def prepare_dataset(config: DataConfig, out: str | Path, force: bool = False) -> PreparedData:
    """Read ``config.source``, apply the protocol and write the frozen samples to ``out`` (atomically).

    The same config gives byte-identical Parquet files. An existing ``out`` that is not a prepared
    folder is refused unless ``force``.
    """
    params = protocol_params(config)
    params.check()
    check_replaceable(out, is_prepared_folder, "prepared data folder", force)  # before the (slow) reading
    samples, domain = _samples(config, params)
    manifest: dict[str, Any] = {
        "source": config.source,
        "path": config.path,
        "options": config.options,
        "domain": domain,
        "seed": config.seed,
        "protocol": {
            "history_len": config.history_len,
            "min_history": config.min_history,
            "num_candidates": config.num_candidates,
            "split_by": config.split_by,
            **({"split": list(config.split)} if config.split_by == "users" else {}),
            **({"val_windows": config.val_windows} if config.val_windows > 1 else {}),
        },
        "counts": samples.counts,
    }
    return write_prepared(out, samples.items, samples.splits, manifest, force=force)
