"""Import of the LLaRA authors' SR checkpoints (``SASRec_movielens.pt`` etc.) without running their pickles.

Their files are torch zip archives (``<run>/data.pkl`` + ``<run>/data/<n>`` storages) holding whole
pickled modules of their code (``__main__.SASRec``, ``SASRecModules_ori.MultiHeadAttention``, torch
layers). :class:`_InertUnpickler` never imports or calls anything named in the pickle: every class
becomes an inert record of its constructor arguments and state, and only tensors are rebuilt, from
the raw storages, by code in this module. The parameters found are then renamed onto our modules.
Item ids keep the authors' numbering (``llara data prepare llara`` uses the same ids).

Sizes are bounded before anything is decompressed: the archive's members may declare at most
:data:`MAX_UNPACKED_BYTES` in all, each storage must be exactly as large as the pickle says, and every
tensor must be a view inside its storage. What the pickle builds is bounded too (each tensor is a copy,
so many views of one storage would add up): storages read plus tensors rebuilt may take at most twice
the file's size + 64 MiB (:func:`llara.safe_pickle.budget_for`), in at most :data:`MAX_REBUILDS` storage
reads and tensor rebuilds, each charged before it is allocated. The pickle machine itself is the
pure-Python one (:class:`llara.safe_pickle.HookedUnpickler`), which never allocates what an opcode
merely announces.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import math
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llara.errors import LlaraError
from llara.safe_pickle import AllocationBudget, BudgetExceeded, HookedUnpickler, budget_for
from llara.sr.base import SequentialRecommender
from llara.sr.checkpoint import check_out_dir, save_sr
from llara.sr.registry import build_sr

#: the most bytes the members of an authors' archive may unpack to (their SR models are a few MB)
MAX_UNPACKED_BYTES = 256 * 2**20

#: the most storage reads plus tensor rebuilds one pickle may ask for (an authors' model has a few dozen)
MAX_REBUILDS = 4096

#: the authors' root class -> our model type
AUTHORS_CLASSES = {"SASRec": "sasrec", "GRU": "gru4rec", "Caser": "caser"}

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

#: their SASRec parameter prefixes -> ours (Conv1d kernels of width 1 become Linear weights)
_SASREC_NAMES = {
    "item_embeddings": "embedding",
    "positional_embeddings": "position",
    "ln_1": "query_norm",
    "ln_2": "ffn_norm",
    "ln_3": "final_norm",
    "feed_forward.layer_norm": "ffn_residual_norm",
    "mh_attn.linear_q": "query",
    "mh_attn.linear_k": "key",
    "mh_attn.linear_v": "value",
    "feed_forward.w_1": "ffn_in",
    "feed_forward.w_2": "ffn_out",
    "s_fc": "output",
}
_GRU_NAMES = {"item_embeddings": "embedding", "gru": "gru", "s_fc": "output"}
_CASER_NAMES = {
    "item_embeddings": "embedding",
    "horizontal_cnn": "horizontal",
    "vertical_cnn": "vertical",
    "s_fc": "output",
}


class _Malformed(Exception):
    """Raised inside the unpickler; reported with the file's name."""


class _Inert:
    """Stand-in for any class a pickle names: records arguments and state, runs nothing."""

    pickled_name = "?"
    args: tuple = ()
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Storage:
    """Marker for a ``torch.<X>Storage`` global: only its dtype is used."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(
    storage: Any, offset: Any, size: Any, stride: Any, *_: Any, budget: AllocationBudget
) -> torch.Tensor:
    """The tensor a pickle describes as a view of ``storage`` (a copy, charged to ``budget`` first),
    refused unless the view lies inside it."""
    budget.count("storage reads and tensor rebuilds")
    if not isinstance(storage, torch.Tensor) or not isinstance(size, tuple) or not isinstance(stride, tuple):
        raise _Malformed(f"malformed tensor header (storage {type(storage).__name__}, size {size!r}, stride {stride!r})")
    numbers = [offset, *size, *stride]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers) or len(size) != len(stride):
        raise _Malformed(f"malformed tensor header (offset {offset!r}, size {size!r}, stride {stride!r})")
    count = math.prod(size)
    last = offset + sum((n - 1) * step for n, step in zip(size, stride)) if count else offset - 1
    if count > storage.numel() or last >= storage.numel():
        raise _Malformed(f"a tensor of size {tuple(size)} at offset {offset} overruns its storage of {storage.numel()}")
    budget.charge(count * storage.element_size(), f"a tensor of size {tuple(size)}")
    return torch.as_strided(storage, tuple(size), tuple(stride), offset).clone()


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


def _numpy_scalar(dtype: _Inert, data: bytes) -> Any:
    return np.frombuffer(data, dtype=np.dtype(str(dtype.args[0]))).item()


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    if encoding != "latin1":
        raise _Malformed(f"unexpected encoding {encoding!r} in the pickle")
    return codecs.encode(text, "latin1")


class _InertUnpickler(HookedUnpickler):
    """Unpickles a torch module archive into inert records plus real tensors, within ``budget``."""

    _FUNCTIONS = {
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("_codecs", "encode"): _latin1,
        ("collections", "OrderedDict"): dict,
    }

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, budget: AllocationBudget) -> None:
        super().__init__(data)
        self.archive = archive
        self.prefix = prefix
        self.budget = budget
        self.storages: dict[str, torch.Tensor] = {}
        self.classes: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return functools.partial(_rebuild_tensor, budget=self.budget)
        if (module, name) in self._FUNCTIONS:
            return self._FUNCTIONS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        if (module, name) not in self.classes:  # one class per name, however often the pickle names it
            self.classes[(module, name)] = type(name, (_Inert,), {"pickled_name": f"{module}.{name}"})
        return self.classes[(module, name)]

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise _Malformed(f"unexpected persistent id {pid!r} in the checkpoint")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            self.storages[key] = self._storage(str(key), storage_type.dtype, numel)
        return self.storages[key]

    def _storage(self, key: str, dtype: torch.dtype, numel: Any) -> torch.Tensor:
        """Storage ``key``, read only when the archive declares exactly the bytes its header announces."""
        try:
            info = self.archive.getinfo(f"{self.prefix}/data/{key}")
        except KeyError as exc:
            raise _Malformed(f"storage data/{key} is missing from the archive") from exc
        if not isinstance(numel, int) or isinstance(numel, bool) or info.file_size != numel * dtype.itemsize:
            raise _Malformed(
                f"storage data/{key} holds {info.file_size} bytes but its header announces {numel!r} {dtype} values"
            )
        self.budget.count("storage reads and tensor rebuilds")
        self.budget.charge(info.file_size, f"storage data/{key}")
        raw = self.archive.read(info)
        return torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)


#: what a malformed pickle raises while it is unpickled
_UNREADABLE = (
    pickle.UnpicklingError,
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    IndexError,
    RuntimeError,
    OverflowError,
    RecursionError,
    struct.error,
)


def read_authors_checkpoint(path: str | Path) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """The root class name, flat parameters (``a.b.weight`` -> tensor) and root attributes of their file."""
    path = Path(path)
    if not path.is_file():
        raise LlaraError(f"{path} does not exist")
    if not zipfile.is_zipfile(path):
        raise LlaraError(f"{path} is not a torch zip archive (older torch.save formats are not supported)")
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > MAX_UNPACKED_BYTES:
                raise LlaraError(
                    f"{path} declares {unpacked:,} unpacked bytes, more than the {MAX_UNPACKED_BYTES:,} an authors' "
                    "SR checkpoint needs; refused before unpacking"
                )
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pickles) != 1:
                raise LlaraError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
            prefix = pickles[0].rpartition("/")[0]
            budget = AllocationBudget(budget_for(path.stat().st_size), max_calls=MAX_REBUILDS)
            root = _InertUnpickler(archive.read(pickles[0]), archive, prefix, budget).load()
    except (_Malformed, BudgetExceeded) as exc:
        raise LlaraError(f"{path}: {exc}") from exc
    except MemoryError as exc:
        raise LlaraError(f"{path}: ran out of memory while unpickling it (a hostile or damaged checkpoint?)") from exc
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError) as exc:
        raise LlaraError(f"{path}: damaged archive ({type(exc).__name__}: {exc})") from exc
    except _UNREADABLE as exc:
        raise LlaraError(f"{path}: unreadable pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(root, _Inert) or not isinstance(root.state, dict):
        raise LlaraError(f"{path} does not hold a pickled module")
    attributes = {k: v for k, v in root.state.items() if not k.startswith("_") and not isinstance(v, _Inert)}
    return root.pickled_name.rpartition(".")[2], _parameters(root), attributes


def _parameters(module: _Inert, prefix: str = "") -> dict[str, torch.Tensor]:
    state = module.state if isinstance(module.state, dict) else {}
    out = {f"{prefix}{k}": v for k, v in state.get("_parameters", {}).items() if isinstance(v, torch.Tensor)}
    for name, child in state.get("_modules", {}).items():
        if isinstance(child, _Inert):
            out.update(_parameters(child, f"{prefix}{name}."))
    return out


def _rename(params: dict[str, torch.Tensor], names: dict[str, str], path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in params.items():
        source = max((p for p in names if key == p or key.startswith(p + ".")), key=len, default=None)
        if source is None:
            raise LlaraError(f"{path}: parameter {key!r} has no counterpart in our model")
        new = names[source] + key[len(source) :]
        out[new] = tensor.squeeze(-1) if source.startswith("feed_forward.w_") and key.endswith("weight") else tensor
    return out


def authors_model(path: str | Path) -> tuple[SequentialRecommender, dict[str, Any]]:
    """Our model holding the weights of an authors' checkpoint, and provenance for config.json."""
    path = Path(path)
    cls_name, params, attributes = read_authors_checkpoint(path)
    if cls_name not in AUTHORS_CLASSES:
        raise LlaraError(f"{path} holds a {cls_name!r}; known authors' models: {', '.join(AUTHORS_CLASSES)}")
    model_type = AUTHORS_CLASSES[cls_name]
    try:
        model, names = _build(path, model_type, params, attributes)
    except KeyError as exc:
        raise LlaraError(f"{path}: parameter {exc} of the authors' {cls_name} is missing") from exc
    except (TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise LlaraError(f"{path}: malformed {cls_name} parameters ({type(exc).__name__}: {exc})") from exc
    try:
        model.load_state_dict(_rename(params, names, path), strict=True)
    except RuntimeError as exc:
        raise LlaraError(f"{path}: weights do not fit our {model_type}: {exc}") from exc
    provenance = {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "class": cls_name}
    return model.eval(), provenance


def _build(
    path: Path, model_type: str, params: dict[str, torch.Tensor], attributes: dict[str, Any]
) -> tuple[SequentialRecommender, dict[str, str]]:
    """Our empty model shaped like the authors' parameters, and the name map onto it."""
    rows, dim = params["item_embeddings.weight"].shape
    num_items = params["s_fc.weight"].shape[0]
    if rows != num_items + 1:
        raise LlaraError(f"{path}: {rows} embedding rows for {num_items} items (expected items + 1 pad row)")
    max_len, hyper, names = _architecture(model_type, params, attributes)
    return build_sr(model_type, num_items, dim, max_len, **hyper), names


def _architecture(
    model_type: str, params: dict[str, torch.Tensor], attributes: dict[str, Any]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Window length, constructor hyperparameters and the name map of one authors' model."""
    if model_type == "sasrec":
        return params["positional_embeddings.weight"].shape[0], {}, _SASREC_NAMES
    if model_type == "caser":
        kernels = {k: v for k, v in params.items() if k.startswith("horizontal_cnn.") and k.endswith("weight")}
        heights = sorted((int(k.split(".")[1]), v.shape[2]) for k, v in kernels.items())
        hyper = {
            "num_filters": params["horizontal_cnn.0.weight"].shape[0],
            "filter_sizes": [h for _, h in heights],
            "dropout": float(attributes.get("dropout_rate", 0.1)),
        }
        return params["vertical_cnn.weight"].shape[2], hyper, _CASER_NAMES
    return int(attributes.get("state_size", 10)), {}, _GRU_NAMES


def import_authors_checkpoint(path: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Convert an authors' ``.pt`` file into our checkpoint folder ``out_dir`` (written atomically).

    An existing ``out_dir`` that is not an SR checkpoint folder is refused unless ``force``.
    """
    check_out_dir(Path(out_dir), force)
    model, provenance = authors_model(path)
    id_space = "the authors' item ids (llara data prepare llara)"
    return save_sr(model, out_dir, force=force, imported_from=provenance, id_space=id_space)
