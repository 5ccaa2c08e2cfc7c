"""Bit-level primitives for the compiled kernels.

``popcount`` lowers to ``llvm.ctpop.i64``; on CPUs with AVX-512 VPOPCNTDQ the loop vectoriser turns
it into ``vpopcntq`` over eight codes at once. ``rotl1`` is ``1`` rotated left by ``d`` (a one-hot
word for ``d mod 64``); rotating the word 1 is a shift by ``d mod 64``, one ``vpsllvq`` when
vectorised (the rotate pattern it replaced costs three instructions on AVX2, one on AVX-512).
"""

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def popcount(typingctx, x):
    """Number of set bits of a uint64, as int64."""
    if x != types.uint64:
        return None
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [args[0].type])
        return builder.call(fn, args)

    return sig, codegen


_ONE = np.uint64(1)
_M63 = np.uint64(63)


@njit(inline="always")
def rotl1(d):
    """``1`` rotated left by ``d`` bits (``d`` an int64 in 0..64): a one-hot word for d mod 64."""
    return _ONE << (np.uint64(d) & _M63)


@njit(inline="always")
def ctz(x):
    """Index of the lowest set bit of a non-zero uint64."""
    return popcount((x & (~x + _ONE)) - _ONE)


@intrinsic
def eqmask64(typingctx, arr, start, v):
    """Bit i set where arr[start + i] == v, for the 64 bytes of a uint8 array from start (one
    AVX-512 byte compare into a mask). The caller guarantees start + 64 <= len(arr)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and arr.ndim == 1):
        return None
    sig = types.uint64(arr, types.int64, types.uint8)

    def codegen(context, builder, signature, args):
        ir = cgutils.ir  # llvmlite's IR builder, as numba's own extension helpers use it
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        vty = ir.VectorType(ir.IntType(8), 64)
        vec = builder.load(builder.bitcast(ptr, vty.as_pointer()), align=1)
        i32 = ir.IntType(32)
        one = builder.insert_element(ir.Constant(vty, ir.Undefined), args[2], ir.Constant(i32, 0))
        zeros = ir.Constant(ir.VectorType(i32, 64), [0] * 64)
        splat = builder.shuffle_vector(one, ir.Constant(vty, ir.Undefined), zeros)
        return builder.bitcast(builder.icmp_unsigned("==", vec, splat), ir.IntType(64))

    return sig, codegen
