import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'

const CHACHA_POLY1305 = 'chacha20-poly1305'
const TAG_LENGTH = 16

/**
 * Below this the default implementation's WebAssembly cipher is faster than setting up
 * an OpenSSL one (the Noise library draws the line at the same place).
 */
const NATIVE_THRESHOLD = 1200

type CipherOutput = ReturnType<ICryptoInterface['chaCha20Poly1305Encrypt']>

/**
 * The Noise library speaks uint8arraylist 2, Shoal 3: one class at run time (both mark
 * their lists with the same registered symbol, and append either), two to TypeScript.
 */
const asNoiseList = (list: Uint8ArrayList): CipherOutput => list as unknown as CipherOutput

/** One KeyObject per Noise cipher key: a session encrypts every message with the same key. */
const keys = new WeakMap<Uint8Array, KeyObject>()

function keyObject (k: Uint8Array): KeyObject {
  let key = keys.get(k)
  if (key == null) {
    key = createSecretKey(k)
    keys.set(k, key)
  }
  return key
}

/**
 * Noise's transport cipher as Shoal runs it: OpenSSL's ChaCha20-Poly1305, as in the
 * library's default, without two costs that dominate at hundreds of MB/s:
 *
 * - the key is turned into a KeyObject once per session, not once per 64 KiB message;
 * - the ciphertext and its tag go out as a list rather than being concatenated into a
 *   fresh buffer, one copy (and one allocation the garbage collector must chase) less
 *   per byte sent.
 *
 * Wire format and handshake are unchanged, so peers running the default interoperate.
 */
export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt (plaintext, nonce, ad, k) {
    if (plaintext.byteLength < NATIVE_THRESHOLD) {
      return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    }
    const cipher = createCipheriv(CHACHA_POLY1305, keyObject(k), nonce, { authTagLength: TAG_LENGTH })
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
    const out = new Uint8ArrayList()
    if (plaintext instanceof Uint8Array) {
      out.append(cipher.update(plaintext))
    } else {
      for (const buf of plaintext) {
        out.append(cipher.update(buf))
      }
    }
    const final = cipher.final()
    if (final.byteLength > 0) {
      out.append(final)
    }
    out.append(cipher.getAuthTag())
    return asNoiseList(out)
  },
  chaCha20Poly1305Decrypt (ciphertext, nonce, ad, k, dst) {
    if (ciphertext.byteLength < NATIVE_THRESHOLD) {
      return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
    }
    const end = ciphertext.byteLength - TAG_LENGTH
    // Noise hands over the ciphertext (less its tag) once more as `dst`, in one piece
    // even when the message arrived in many socket reads: decrypting that contiguous
    // copy gives one plaintext buffer per message, so everything above the cipher
    // (muxer, framing, hashing, file writes) sees 64 KiB chunks, not read-sized bits
    const text = dst?.byteLength === end ? dst : ciphertext.subarray(0, end)
    const decipher = createDecipheriv(CHACHA_POLY1305, keyObject(k), nonce, { authTagLength: TAG_LENGTH })
    decipher.setAAD(ad, { plaintextLength: end })
    decipher.setAuthTag(ciphertext.subarray(end))
    const plaintext = decipher.update(text)
    const final = decipher.final()
    return final.byteLength > 0 ? asNoiseList(new Uint8ArrayList(plaintext, final)) : plaintext
  }
}
