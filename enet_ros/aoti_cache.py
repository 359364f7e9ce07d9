"""The on-disk cache of compiled networks (AOTInductor packages), trusted only once verified.

A package is a shared library: loading damaged bytes can crash the process, and a package
built for another input size or weights can load and run and give wrong masks. So:

- Packages live in ``cache_dir()/aoti`` named by a key that binds the weights, network
  code, input size, precision, device, torch version and CPU capability.
- A SHA-256 of each package is written beside it when it is built; a package whose bytes
  do not match is never loaded.
- A loaded package must agree with the eager network on a reference frame (``check``);
  one that does not is discarded.

On any mismatch: one warning line, the package is deleted and rebuilt. A cache folder that
cannot be written (read-only, a file in the way, a full disk) gives one warning line and
a compile into a temporary folder for this run only.

A verified package runs through its C interface (``Package``), which releases Python's
global lock for the whole network call, as torch's own eager operators do; torch's package
loader holds it throughout (25 ms a frame here), so no other thread of the node (receiving
frames, publishing the previous one) could run meanwhile.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import os
from pathlib import Path
import sys
import tempfile
import time
from collections.abc import Callable
import zipfile

import torch

from enet_ros.threads import usable_cpus
from enet_ros.torch_private import (aoti_c_interface, aoti_compile_and_package,
                                    aoti_load_package, handle_tensors, tensor_handles)


def cache_dir() -> Path:
    return Path(os.environ.get('ENET_ROS_CACHE', Path.home() / '.cache' / 'enet_ros'))


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _writable(folder: Path) -> str | None:
    """None when files can be created in ``folder`` (made if missing), else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix='.probe'):
            pass
        return None
    except OSError as exc:
        return f'{type(exc).__name__}: {exc.strerror or exc}'


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f'.{path.stem}.{os.getpid()}.tmp{path.suffix}')
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class CompileError(RuntimeError):
    """The network could not be compiled; the message says why and what to do."""


def _temporary_cache() -> Path:
    return Path(tempfile.mkdtemp(prefix='enet_ros_cache_'))


def _no_space(exc: BaseException) -> str | None:
    """'No space left on device' where ``exc`` or what caused it says so, else None."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return f'{type(exc).__name__}: {exc.strerror}'
        if 'No space left on device' in str(exc):
            return 'the compiler: No space left on device'
        exc = exc.__cause__ or exc.__context__
    return None


def _remove_partial(path: Path) -> None:
    """A package (and checksum) that a failed build may have left: never loaded later."""
    for left in (path, path.with_name(path.name + '.sha256'),
                 *path.parent.glob(f'.{path.stem}.*.tmp*')):
        left.unlink(missing_ok=True)


def _build(net: torch.nn.Module, examples: tuple, path: Path, threads: int) -> None:
    """Export, compile with ``threads`` threads and write the package and its checksum
    atomically, inductor's intermediate files beside it (``inductor/``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    saved = os.environ.get('TORCHINDUCTOR_CACHE_DIR')
    os.environ['TORCHINDUCTOR_CACHE_DIR'] = str(path.parent.parent / 'inductor')
    try:
        # freezing constant-folds the weights, prepacks them for oneDNN and fuses
        # activations into the convolutions; inductor applies it only with gradients off
        # (under inference_mode the export would keep the weights as inputs it cannot fold)
        with torch.no_grad():
            program = torch.export.export(net, tuple(examples))
            _write_atomic(path, lambda tmp_path: aoti_compile_and_package(
                program, package_path=str(tmp_path), inductor_configs={'freezing': True}))
        digest = _sha256(path.read_bytes())
        _write_atomic(path.with_name(path.name + '.sha256'),
                      lambda p: p.write_text(digest + '\n'))
    finally:
        torch.set_num_threads(caller_threads)
        if saved is None:  # the process's environment as it was
            os.environ.pop('TORCHINDUCTOR_CACHE_DIR', None)
        else:
            os.environ['TORCHINDUCTOR_CACHE_DIR'] = saved


class Package:
    """A compiled network (the shared library inside an AOTInductor package) called through
    AOTInductor's C interface: tensors in, a tuple of tensors out, without holding Python's
    global lock while it runs."""

    # prototypes of their own: setting restype/argtypes on ctypes.pythonapi's functions
    # would change them for every other user in the process
    _capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ('PyCapsule_GetPointer', ctypes.pythonapi))
    _new_capsule = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.c_void_p)(('PyCapsule_New', ctypes.pythonapi))

    def __init__(self, package: bytes, folder: Path):
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            libraries = [n for n in archive.namelist() if n.endswith('.so')]
            if len(libraries) != 1:
                raise ValueError(f'expected one shared library in the package, found '
                                 f'{len(libraries)}')
            library = archive.read(libraries[0])
        lib = self._lib = _open_library(library, folder)
        for fn, args in ((lib.AOTInductorModelContainerCreateWithDevice,
                          [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p]),
                         (lib.AOTInductorModelContainerDelete, [ctypes.c_void_p]),
                         (lib.AOTInductorModelContainerGetNumInputs,
                          [ctypes.c_void_p, ctypes.c_void_p]),
                         (lib.AOTInductorModelContainerGetNumOutputs,
                          [ctypes.c_void_p, ctypes.c_void_p]),
                         (lib.AOTInductorModelContainerRun,
                          [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                           ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p])):
            fn.argtypes, fn.restype = args, ctypes.c_int32
        self._handle = ctypes.c_void_p()
        self._call('create', lib.AOTInductorModelContainerCreateWithDevice,
                   ctypes.byref(self._handle), 1, b'cpu', None)  # CPU only: resolve_backend
        counts = ctypes.c_size_t(), ctypes.c_size_t()
        self._call('count inputs', lib.AOTInductorModelContainerGetNumInputs,
                   self._handle, ctypes.byref(counts[0]))
        self._call('count outputs', lib.AOTInductorModelContainerGetNumOutputs,
                   self._handle, ctypes.byref(counts[1]))
        self.num_inputs, self.num_outputs = counts[0].value, counts[1].value

    @staticmethod
    def _call(what: str, fn, *args) -> None:
        if fn(*args) != 0:
            raise RuntimeError(f'AOTInductor {what} failed (the reason is on standard error)')

    def __call__(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(tensors) != self.num_inputs:
            raise ValueError(f'the network takes {self.num_inputs} tensors, got {len(tensors)}')
        # new tensor handles (references); the call takes them over
        capsules = tensor_handles(list(tensors))
        inputs = (ctypes.c_void_p * len(capsules))(
            *[self._capsule_pointer(c, None) for c in capsules])
        outputs = (ctypes.c_void_p * self.num_outputs)()
        self._call('run', self._lib.AOTInductorModelContainerRun, self._handle, inputs,
                   len(capsules), outputs, self.num_outputs, None, None)
        return tuple(handle_tensors(
            [self._new_capsule(p, None, None) for p in outputs]))

    def __del__(self) -> None:
        handle = getattr(self, '_handle', None)
        if handle is not None and handle.value:
            self._lib.AOTInductorModelContainerDelete(handle)


# Libraries loaded in this process, by the SHA-256 of their bytes. A compiled package's
# C++ library cannot be unloaded (dlclose leaves it mapped), so each load of the same
# package would cost its 1.2 MB again: a managed node reconfigured 20 times grew by 25 MB.
# Loaded once, the library serves every later container of the same package.
_LIBRARIES: dict[str, ctypes.CDLL] = {}


def _open_library(library: bytes, folder: Path) -> ctypes.CDLL:
    key = _sha256(library)
    if key not in _LIBRARIES:
        # dlopen needs a file (the mapping outlives it): in the package's folder rather
        # than /tmp, which hardened systems mount noexec; /tmp where the folder is
        # read-only (a cache baked into the vehicle's image)
        try:
            f = tempfile.NamedTemporaryFile(dir=folder, prefix='.load_', suffix='.so')
        except OSError:
            f = tempfile.NamedTemporaryFile(prefix='enet_ros_', suffix='.so')
        with f:
            f.write(library)
            f.flush()
            _LIBRARIES[key] = ctypes.CDLL(f.name)
    return _LIBRARIES[key]


def _load_verified(path: Path, check) -> tuple[Package | None, str]:
    """(loaded package, '') or (None, why it cannot be trusted)."""
    digest = path.with_name(path.name + '.sha256')
    try:
        expected = digest.read_text().strip()
    except OSError:
        return None, 'no checksum beside it'
    package = path.read_bytes()
    if _sha256(package) != expected:
        return None, 'its bytes do not match the checksum written when it was built'
    try:
        fn = Package(package, path.parent) if aoti_c_interface() else \
            aoti_load_package(str(path))
        if check is not None:
            check(fn)
    except Exception as exc:  # a package for other shapes, or a failed self-check
        return None, f'{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}'
    return fn, ''


def compile_ahead(net: torch.nn.Module, examples: tuple[torch.Tensor, ...], key: str,
                  check: Callable | None = None, info: Callable[[str], None] | None = None,
                  warn: Callable[[str], None] | None = None):
    """A callable AOTInductor package of ``net`` for the shapes and dtypes of its inputs
    ``examples`` (the frame first).

    ``check(fn)`` raises when ``fn`` disagrees with the eager network. Cached packages are
    verified (checksum, then ``check``) before use; a fresh compile is checked too, and a
    failure there raises RuntimeError. ``info`` and ``warn`` take the log lines (default:
    standard error).
    """
    info, warn = info or _stderr, warn or _stderr
    cache = cache_dir()
    # inductor shapes each kernel's parallel loops for the threads it sees while compiling:
    # compiled on one thread (as the node builds the model), the package took 22.4 ms a
    # frame on two threads here, against 14.5 ms compiled on two. So compile with every
    # usable CPU, whatever the caller's thread has, and name the package by that count.
    threads = usable_cpus()
    name = f'enet-{key}-t{threads}.pt2'
    path = cache / 'aoti' / name
    problem = _writable(cache / 'aoti') or _writable(cache / 'inductor')
    if path.exists():  # a read-only cache may still hold a good package
        fn, why = _load_verified(path, check)
        if fn is not None:
            return fn
        warn(f'discarding cached package {path}: {why}; recompiling')
        if problem is None:
            for stale in (path, path.with_name(path.name + '.sha256')):
                stale.unlink(missing_ok=True)
    if problem is not None:
        folder = _temporary_cache()
        warn(f'cache {cache} is not writable ({problem}); compiling into {folder} for this '
             f'run only: set ENET_ROS_CACHE to a writable folder to keep the compiled model')
        path = folder / 'aoti' / name
    info(f'compiling the network for {tuple(examples[0].shape)} {str(examples[0].dtype)[6:]} '
         f'(once for these weights, size and precision: tens of seconds to minutes on a '
         f'small CPU; cached in {path.parent})')
    t = time.perf_counter()
    try:
        _build(net, examples, path, threads)
    except Exception as exc:  # a disk that fills during the compile: the C++ compiler
        full = _no_space(exc)  # says so in a long error, or a write raises ENOSPC
        if full is None or problem is not None:
            raise
        _remove_partial(path)
        folder = _temporary_cache()
        warn(f'cache {cache} ran out of disk space while compiling ({full}); compiling into '
             f'{folder} for this run only: free space there or set ENET_ROS_CACHE to a '
             f'folder with room to keep the compiled model')
        path = folder / 'aoti' / name
        try:
            _build(net, examples, path, threads)
        except Exception as again:
            if _no_space(again) is None:
                raise
            raise CompileError(f'no disk space to compile the network, in {cache} nor in '
                               f'{folder.parent}: free space, or use backend eager') from None
    info(f'compiled in {time.perf_counter() - t:.1f} s')
    fn, why = _load_verified(path, check)
    if fn is None:
        raise CompileError(f'the freshly compiled network failed its check ({why}); '
                           f'use backend eager')
    return fn
