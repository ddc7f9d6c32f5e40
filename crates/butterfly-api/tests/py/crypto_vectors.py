"""Test vectors for butterfly-api's encryption, from bfcrypto.py.

usage: crypto_vectors.py gen             -> JSON list of vectors on stdout
       crypto_vectors.py decrypt KEY BLOB -> payload hex (KEY base64, BLOB hex)
"""
import base64
import json
import sys

import bfcrypto


def gen():
    vectors = []
    for n, size in enumerate([0, 1, 15, 16, 17, 47, 48, 200, 1000]):
        key = bytes((n * 7 + i) % 256 for i in range(32))
        iv = bytes((n + 3 * i) % 256 for i in range(16))
        payload = bytes((n + i * 13) % 256 for i in range(size))
        blob = bfcrypto.encrypt(key, payload, iv)
        assert bfcrypto.decrypt(key, blob) == payload
        vectors.append({"key": base64.b64encode(key).decode(), "iv": iv.hex(),
                        "payload": payload.hex(), "blob": blob.hex()})
    json.dump(vectors, sys.stdout)


def main():
    if sys.argv[1] == "gen":
        gen()
    elif sys.argv[1] == "decrypt":
        key = base64.b64decode(sys.argv[2])
        print(bfcrypto.decrypt(key, bytes.fromhex(sys.argv[3])).hex())
    else:
        sys.exit("unknown command")


if __name__ == "__main__":
    main()
