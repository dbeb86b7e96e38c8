"""Weight files in and out: torch.save archives (zip CRCs checked) and safetensors files
(netdsl's per-tensor CRC-32s checked), read into a state_dict that fits a spec's module.

A safetensors file netdsl writes carries, in its header's metadata, the CRC-32 of every
tensor's bytes (`netdsl.crc32`) and the names that share a tensor (`netdsl.aliases`: safetensors
stores a shared tensor once). Reading checks every CRC and names the tensor that fails. A
safetensors file from elsewhere (no `netdsl.crc32`) is read as it is: safetensors itself checks
the header and the byte ranges, but not the bytes.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from .diagnostics import Diagnostic, NetdslError

EXTRA = "pip install 'netdsl[export]'"
SAFETENSORS_SUFFIX = ".safetensors"


class Damaged(ValueError):
    """A weight file fails its integrity check; `.entry` names the tensor or archive entry."""

    def __init__(self, path, entry, why):
        super().__init__(f"{path} is damaged: {entry} {why}")
        self.path, self.entry = str(path), entry


def need(module: str, what: str):
    """Import an optional dependency, or E-error naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise NetdslError([Diagnostic(
            "E507", f"{what} needs the '{module.split('.')[0]}' package, which is not installed",
            hint=f"install netdsl's export extra: {EXTRA}")]) from None


def is_safetensors(path) -> bool:
    return str(path).endswith(SAFETENSORS_SUFFIX)


def _crc(t) -> int:
    """CRC-32 of a tensor's bytes as stored (contiguous, little-endian: what safetensors keeps)."""
    import torch

    data = t.detach().cpu().contiguous().reshape(-1)
    if data.dtype == torch.bool:
        data = data.to(torch.uint8)
    return zlib.crc32(data.view(torch.uint8).numpy().tobytes()) if data.numel() else 0


def safetensors_bytes(state: dict, metadata: dict[str, str] | None = None) -> bytes:
    """A state_dict as safetensors bytes: shared tensors stored once (their other names in
    `netdsl.aliases`), every tensor's CRC-32 in `netdsl.crc32`."""
    st = need("safetensors.torch", "writing safetensors")
    tensors, aliases, owner_of = {}, {}, {}
    for name, t in state.items():
        t = t.detach().cpu()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
               tuple(t.stride()), t.dtype) if t.numel() else None
        if key is not None and key in owner_of:
            aliases[name] = owner_of[key]
            continue
        if key is not None:
            owner_of[key] = name
        tensors[name] = t.contiguous()
    meta = dict(metadata or {})
    meta["netdsl.crc32"] = json.dumps({k: _crc(v) for k, v in tensors.items()}, sort_keys=True)
    if aliases:
        meta["netdsl.aliases"] = json.dumps(aliases, sort_keys=True)
    meta["netdsl.order"] = json.dumps(list(state))
    meta.setdefault("format", "pt")
    return st.save(tensors, metadata=meta)


def read_safetensors(path, device="cpu") -> tuple[dict, dict]:
    """(state_dict, metadata) of a safetensors file, every CRC-32 netdsl wrote checked (raises
    `Damaged` naming the tensor); aliases restored, in the order the file names them."""
    st = need("safetensors.torch", "reading safetensors")
    data = Path(path).read_bytes()
    try:
        tensors = st.load(data)
        meta = _metadata(data)
    except Exception as exc:  # noqa: BLE001 -- a bad header, offsets, dtype: safetensors' words
        raise Damaged(path, "its header", f"cannot be read ({str(exc).splitlines()[0]})") from None
    crcs = meta.get("netdsl.crc32")
    if crcs is not None:
        try:
            expected = json.loads(crcs)
        except ValueError:
            raise Damaged(path, "its header", "has unreadable checksums") from None
        for name in sorted(set(expected) | set(tensors)):
            if name not in tensors or name not in expected:
                raise Damaged(path, f"tensor {name}", "is missing from the file or its checksums")
            if _crc(tensors[name]) != expected[name]:
                raise Damaged(path, f"tensor {name}", "does not match its CRC-32")
    aliases = json.loads(meta.get("netdsl.aliases", "{}"))
    for alias, owner in aliases.items():
        tensors[alias] = tensors[owner]
    order = json.loads(meta.get("netdsl.order", "null")) or list(tensors)
    state = {k: tensors[k].to(device) for k in order if k in tensors}
    state.update({k: v.to(device) for k, v in tensors.items() if k not in state})
    return state, meta


def _metadata(data: bytes) -> dict:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {}) or {}


def damaged(exc, advice: str) -> NetdslError:
    """E409 for a file whose zip CRCs do not match (loop.verify_archive): the file, the
    damaged entry and the tensor in it, and what to do, in one line."""
    return NetdslError([Diagnostic("E409", f"{exc}; {advice}")])


def unreadable(exc: Exception) -> str:
    """Why torch.load refused a file, in a user's words."""
    text = str(exc)
    if "Weights only load failed" in text or "invalid load key" in text:
        return "it is not a file written by torch.save, or it holds more than tensors"
    if "PytorchStreamReader" in text or "failed finding central directory" in text:
        return "the file is truncated or corrupt"
    return text.splitlines()[0] if text else type(exc).__name__


def load_state(path, device="cpu") -> dict:
    """The state_dict in a weight file: a run's weights.pt, a checkpoint (its model), or a
    safetensors file. Raises NetdslError: E501 no file, E409 damaged or not weights."""
    from .runtime import loop

    path = Path(path)
    if not path.is_file():
        raise NetdslError([Diagnostic("E501", f"{path}: no such weights file")])
    advice = ("use another copy of the weights (a run's weights.pt, checkpoints/best.pt or "
              "last.pt) or train again")
    if is_safetensors(path):
        try:
            return read_safetensors(path, device)[0]
        except Damaged as exc:
            raise NetdslError([Diagnostic("E409", f"{exc}; {advice}")]) from None
    try:
        state = loop.load_tensors(path, device)
    except loop.DamagedArchive as exc:
        raise damaged(exc, advice) from None
    except Exception as exc:  # noqa: BLE001 -- truncated, foreign or pickled-object files
        raise NetdslError([Diagnostic("E409", f"cannot read {path}: {unreadable(exc)}")]) from None
    if isinstance(state, dict) and state.get("format") == loop.CHECKPOINT_FORMAT:
        state = state["model"]
    return state
