import { parseDigest, sha256Hex } from './digest.ts'

export interface TaskSubject {
  /** Where the content comes from */
  url: string
  /** The content's digest, when the source names one (registry blobs do) */
  digest?: string | undefined
}

/**
 * A task is one piece of content being distributed. Content with a digest is keyed by
 * the digest, so the same layer pulled from two repositories (or two registries) is
 * fetched from its source once; other content is keyed by its URL.
 *
 * The id is 64 hex digits, safe as a file name and a database key.
 */
export function taskIdFor (subject: TaskSubject): string {
  if (subject.digest != null) {
    return sha256Hex(`digest:${parseDigest(subject.digest).value}`)
  }

  return sha256Hex(`url:${new URL(subject.url).href}`)
}

const TASK_ID_RE = /^[a-f0-9]{64}$/

export function isTaskId (id: string): boolean {
  return TASK_ID_RE.test(id)
}
