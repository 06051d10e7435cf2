import { Writable } from 'node:stream'
import { DigestMismatchError, HttpError, TaskFailedError } from '@shoal/core'
import { streamContent } from '../download/content-stream.ts'
import { downloadError, openDownload, type SendDownloadComponents } from './send-download.ts'
import type { DownloadRequest } from '../download/download-manager.ts'

/**
 * Brings a manifest by digest through the swarm, like a blob: the supernode fetches it
 * from the registry once for every daemon, peers share it, and it stays in this host's
 * store. Its bytes are collected (at most `maxBytes`: manifests are small) and checked
 * against the digest as they stream.
 *
 * @throws {HttpError} the registry's 4xx (404 as MANIFEST_UNKNOWN), 502 MANIFEST_INVALID when larger than `maxBytes`
 */
export async function downloadManifest (components: SendDownloadComponents, request: DownloadRequest & { digest: string }, options: { signal: AbortSignal, maxBytes: number }): Promise<Buffer> {
  const download = await openDownload(components, request, options.signal)
  if (download.state === 'failed') {
    throw manifestError(download.error)
  }
  if (download.contentLength != null && download.contentLength > options.maxBytes) {
    throw tooLarge(request.digest, download.contentLength, options.maxBytes)
  }
  const chunks: Buffer[] = []
  let size = 0
  const collector = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      size += chunk.byteLength
      // past the limit only counted: a source that did not say its length is still
      // bounded by the source client's size cap and the download's timeout
      if (size <= options.maxBytes) {
        // a copy: the reader hands out pooled buffers it takes back once written
        chunks.push(Buffer.from(chunk))
      }
      callback()
    }
  })
  try {
    await streamContent(download, components.store, collector, { signal: options.signal })
  } catch (err) {
    if (err instanceof DigestMismatchError) {
      await components.downloads.invalidate(download.taskId)
      throw new HttpError(502, 'MANIFEST_INVALID', `the manifest fetched for ${request.digest} does not match it: ${err.message}`)
    }
    if (err instanceof HttpError) {
      throw err
    }
    throw manifestError(err as Error)
  }
  if (size > options.maxBytes) {
    throw tooLarge(request.digest, size, options.maxBytes)
  }
  return Buffer.concat(chunks)
}

/** A failed download, as the manifest route says it. */
function manifestError (err: Error | undefined): HttpError {
  if (err instanceof TaskFailedError && err.reason === 'ERR_DIGEST_MISMATCH') {
    return new HttpError(502, 'MANIFEST_INVALID', `the registry's manifest does not match the digest it was asked for: ${err.message}`)
  }
  const answer = downloadError(err)
  return answer.code === 'BLOB_UNKNOWN' ? new HttpError(404, 'MANIFEST_UNKNOWN', answer.message) : answer
}

function tooLarge (digest: string, size: number, maxBytes: number): HttpError {
  return new HttpError(502, 'MANIFEST_INVALID', `the manifest ${digest} is ${size} bytes or more; manifests larger than ${maxBytes} bytes are refused`)
}
