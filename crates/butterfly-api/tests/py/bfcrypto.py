"""Independent implementation of Butterfly's encryption for test vectors.

Blob = IV (16 B) || X where, with P = SHA-512(payload) || payload || PKCS#7,
the *sender* runs CBC with the AES decrypt primitive:
    X_i = AES_decrypt(K, P_i) XOR P_{i-1}   (P_0 = IV)
and the receiver recovers P_i = AES_encrypt(K, X_i XOR P_{i-1}).
Only raw AES-ECB from the `cryptography` package is used.
"""
import hashlib
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def _ecb(key):
    return Cipher(algorithms.AES(key), modes.ECB())


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def encrypt(key, payload, iv=None):
    iv = iv if iv is not None else os.urandom(16)
    plain = hashlib.sha512(payload).digest() + payload
    pad = 16 - len(plain) % 16
    plain += bytes([pad]) * pad
    dec = _ecb(key).decryptor()
    out = bytearray(iv)
    prev = iv
    for i in range(0, len(plain), 16):
        block = plain[i:i + 16]
        out += _xor(dec.update(block), prev)
        prev = block
    return bytes(out)


def decrypt(key, blob):
    if len(blob) < 96 or len(blob) % 16:
        raise ValueError("bad blob length")
    enc = _ecb(key).encryptor()
    prev = blob[:16]
    plain = bytearray()
    for i in range(16, len(blob), 16):
        block = enc.update(_xor(blob[i:i + 16], prev))
        plain += block
        prev = block
    pad = plain[-1]
    if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad padding")
    plain = bytes(plain[:-pad])
    digest, payload = plain[:64], plain[64:]
    if hashlib.sha512(payload).digest() != digest:
        raise ValueError("integrity")
    return payload
