import numpy as np
import pytest
from test_kernels_ref import LENGTHS

from kernels import pack_codes, unpack_codes


@pytest.mark.parametrize("nbits", LENGTHS + [1, 63, 65])
def test_round_trip_and_packbits_layout(nbits):
    rng = np.random.default_rng(nbits)
    bits = rng.integers(0, 2, (37, nbits), dtype=np.uint8)
    packed = pack_codes(bits)
    words = (nbits + 63) // 64
    assert packed.dtype == np.uint64 and packed.shape == (37, words)
    assert np.array_equal(unpack_codes(packed, nbits), bits)
    ref = np.packbits(bits, axis=1, bitorder="little")
    padded = np.zeros((37, 8 * words), np.uint8)
    padded[:, : ref.shape[1]] = ref
    assert np.array_equal(packed, padded.view("<u8"))
    # bit j is bit j % 64 of word j // 64
    j = nbits - 1
    assert np.array_equal((packed[:, j // 64] >> np.uint64(j % 64)) & np.uint64(1), bits[:, j])
    # unused high bits are zero
    if nbits % 64:
        assert not (packed[:, -1] >> np.uint64(nbits % 64)).any()


def test_input_kinds():
    real = np.array([[0.5, -0.2, 0.0, 1e-9, -1.0]])
    assert unpack_codes(pack_codes(real), 5).tolist() == [[1, 0, 0, 1, 0]]
    b = np.array([[True, False, True]])
    assert pack_codes(b).tolist() == [[5]]
    assert pack_codes(b.astype(np.int64)).tolist() == [[5]]
    assert pack_codes(np.zeros((0, 10), bool)).shape == (0, 1)


def test_bytes_are_faiss_compatible():
    bits = np.zeros((1, 16), np.uint8)
    bits[0, 0] = bits[0, 9] = 1
    assert pack_codes(bits).view(np.uint8)[0, :2].tolist() == [1, 2]
